import createClient from 'openapi-fetch';
import type { paths } from './api-schema';

const REFRESH_KEY = 'stowage.refreshToken';

export interface User {
  username: string;
  roles: string[];
}

interface TokenPair {
  accessToken: string;
  refreshToken: string;
  user: User;
}

/** The contract's error shape, or a network failure put into words. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
  ) {
    super(message);
  }
}

/** Words for any failure: the API's own message when there is one, never raw JSON. */
export function messageOf(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof TypeError) return 'The server cannot be reached. Check the connection and try again.';
  return error instanceof Error && error.message ? error.message : 'Something went wrong.';
}

export async function errorFrom(res: Response): Promise<ApiError> {
  const body: unknown = await res.json().catch(() => null);
  const err = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const message = typeof err?.message === 'string' ? err.message : `The server answered ${res.status}.`;
  return new ApiError(message, res.status, typeof err?.code === 'string' ? err.code : 'UNKNOWN');
}

/**
 * The signed-in session. The access token lives in memory only; the refresh token in
 * sessionStorage (this tab only, gone with it), never in localStorage or a cookie, so a reload
 * keeps the person signed in and nothing outlives the tab.
 */
class Session {
  #access: string | null = null;
  #expiresAt = 0;
  #refreshing: Promise<User | null> | null = null;
  user: User | null = null;
  readonly listeners = new Set<() => void>();

  get token(): string | null {
    return this.#access;
  }

  #accept(pair: TokenPair & { expiresIn: number }): User {
    this.#access = pair.accessToken;
    this.#expiresAt = Date.now() + pair.expiresIn * 1000;
    sessionStorage.setItem(REFRESH_KEY, pair.refreshToken);
    this.user = pair.user;
    this.#emit();
    return pair.user;
  }

  #emit(): void {
    for (const listener of this.listeners) listener();
  }

  async signIn(username: string, password: string): Promise<User> {
    const res = await fetch('/api/auth/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username, password }),
    });
    if (!res.ok) throw await errorFrom(res);
    return this.#accept((await res.json()) as TokenPair & { expiresIn: number });
  }

  /** Trades the stored refresh token for a new pair (once, however many callers ask at once). */
  refresh(): Promise<User | null> {
    this.#refreshing ??= this.#refresh().finally(() => (this.#refreshing = null));
    return this.#refreshing;
  }

  async #refresh(): Promise<User | null> {
    const refreshToken = sessionStorage.getItem(REFRESH_KEY);
    if (!refreshToken) return null;
    const res = await fetch('/api/auth/refresh', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refreshToken }),
    });
    if (!res.ok) {
      if (res.status === 401) this.forget();
      return null;
    }
    return this.#accept((await res.json()) as TokenPair & { expiresIn: number });
  }

  /** An access token valid for at least the next 20 s, refreshed when needed. */
  async validToken(): Promise<string | null> {
    if (this.#access && Date.now() < this.#expiresAt - 20_000) return this.#access;
    await this.refresh();
    return this.#access;
  }

  async signOut(): Promise<void> {
    const token = this.#access;
    if (token) {
      await fetch('/api/auth/logout', {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}` },
      }).catch(() => undefined);
    }
    this.forget();
  }

  forget(): void {
    this.#access = null;
    this.#expiresAt = 0;
    this.user = null;
    sessionStorage.removeItem(REFRESH_KEY);
    this.#emit();
  }
}

export const session = new Session();

/**
 * fetch with the access token; a 401 refreshes once and retries, and a refused refresh signs the
 * person out (the session was ended elsewhere).
 */
export async function authedFetch(input: Request | string, init?: RequestInit): Promise<Response> {
  const request = new Request(input, init);
  const retry = request.clone();
  const token = await session.validToken();
  if (token) request.headers.set('Authorization', `Bearer ${token}`);
  const res = await fetch(request);
  if (res.status !== 401 || !token) return res;
  const user = await session.refresh();
  if (!user || !session.token) {
    session.forget();
    return res;
  }
  retry.headers.set('Authorization', `Bearer ${session.token}`);
  return fetch(retry);
}

/** The typed client: paths, parameters and bodies checked against the served OpenAPI document. */
export const api = createClient<paths>({ fetch: (request: Request) => authedFetch(request) });

/** The data of an openapi-fetch answer, or its error as an ApiError. */
export async function ok<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data, error, response } = await call;
  if (error !== undefined || !response.ok) {
    const err = (error as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ApiError(
      err?.message ?? `The server answered ${response.status}.`,
      response.status,
      err?.code ?? 'UNKNOWN',
    );
  }
  return data as T;
}

/** A protected resource fetched with the token; an error answer becomes an ApiError. */
async function fetchProtected(url: string): Promise<Response> {
  const res = await authedFetch(url);
  if (!res.ok) throw await errorFrom(res);
  return res;
}

/** An object URL of a protected resource (thumbnails, previews), fetched with the token. */
export async function blobUrl(url: string): Promise<string> {
  return URL.createObjectURL(await (await fetchProtected(url)).blob());
}

/**
 * A data: URL of a protected image (the library's thumbnails), fetched with the token. Not an
 * object URL: Chromium registers each of those with a synchronous call to its browser process,
 * which blocked the page for about a millisecond per thumbnail while a library scrolled.
 */
export async function dataUrl(url: string): Promise<string> {
  const blob = await (await fetchProtected(url)).blob();
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result as string);
    reader.onerror = () => reject(reader.error ?? new Error('could not read the image'));
    reader.readAsDataURL(blob);
  });
}
