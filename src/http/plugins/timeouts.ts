import type { ServerOptions } from 'node:http';
import { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../../errors.ts';
import { markTimedOut, rawErrorResponse } from '../error-handler.ts';

export interface TimeoutSettings {
  /** How long a connection the server waits on (headers, body bytes) may stay silent. */
  idleMs: number;
  /** The headers must arrive in full within this long, and then again a body that is not an upload. */
  bodyMs: number;
}

/**
 * Bodies that are streamed to storage as they arrive: they may take as long as the client needs
 * (a 4 GiB upload over a slow line), as long as bytes keep coming. Every other body is small
 * (JSON at most 64 KiB) and must arrive within the body deadline. tus requires this content type
 * on every request that carries upload bytes (tus 1.0.0, "PATCH").
 */
const STREAMED_TYPES = new Set(['multipart/form-data', 'application/offset+octet-stream']);

/** How long a connection answered with 408 gets to flush that answer before it is cut. */
const CLOSE_GRACE_MS = 1000;

/**
 * The timeouts Node's HTTP server enforces itself, as Fastify options:
 * - `headersTimeout`: all the headers within the body deadline (a slowloris sending one header
 *   byte at a time is never idle); Node answers through the clientError handler (408).
 * - the socket timeout (`connectionTimeout`, i.e. `server.timeout`): every silent connection
 *   raises 'timeout', handled by registerTimeouts below.
 * - `requestTimeout` stays off: it counts until the whole body is in, which would end any long
 *   upload; small bodies get their own deadline instead (registerTimeouts).
 * - `keepAliveTimeout` keeps Fastify's default (72 s), longer than nginx's upstream keep-alive
 *   (60 s), so the proxy never sends a request on a connection we are closing.
 */
export function timeoutServerOptions(settings: TimeoutSettings): {
  connectionTimeout: number;
  requestTimeout: number;
  http: ServerOptions;
} {
  return {
    connectionTimeout: settings.idleMs,
    requestTimeout: 0,
    http: {
      headersTimeout: settings.bodyMs,
      requestTimeout: 0,
      // Node checks the headers deadline on this interval (default 30 s): a quarter of the
      // deadline keeps it within 25% of what is configured.
      connectionsCheckingInterval: Math.min(30_000, Math.max(250, Math.floor(settings.bodyMs / 4))),
    },
  };
}

interface InFlight {
  request: FastifyRequest;
  reply: FastifyReply;
}

/**
 * Idle timeouts and the small-body deadline. A request whose body stops arriving (or, for a small
 * body, does not arrive in full in time) is answered 408 REQUEST_TIMEOUT in the contract's shape
 * when nothing of the response has been sent yet, and its connection is closed either way. The
 * route sees its body stream fail as when a client disconnects, so an upload cleans up as it
 * does then: temp file removed, no item, tus offset at what was stored, locks released. This
 * works on the connection, not inside any route, so every upload path gets it.
 */
export function registerTimeouts(app: FastifyInstance, settings: TimeoutSettings): void {
  const inFlight = new WeakMap<Socket, InFlight>();
  /** socket.bytesRead when the last response on a connection finished: more means a request began. */
  const readAtLastResponse = new WeakMap<Socket, number>();
  const deadlines = new WeakMap<FastifyRequest, NodeJS.Timeout>();
  const cut = (socket: Socket, request: FastifyRequest | undefined, reply: FastifyReply | undefined) => {
    if (socket.destroyed) return;
    if (request) markTimedOut(request);
    const canAnswer = reply ? !reply.raw.headersSent : true;
    if (canAnswer && socket.writable) {
      const message = request
        ? 'The request took too long to arrive.'
        : 'The request headers stopped arriving.';
      socket.end(rawErrorResponse(new AppError('REQUEST_TIMEOUT', message), request?.id));
      socket.once('finish', () => socket.destroy());
      setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
    } else {
      socket.destroy();
    }
  };

  // A listener here replaces Node's default (destroy every socket that times out), so the cases
  // can be told apart: only a client that keeps us waiting is cut off.
  app.server.on('timeout', (socket: Socket) => {
    const current = inFlight.get(socket);
    if (!current) {
      // Between requests, or before the first one: an idle connection is closed; one that sent
      // part of a request's headers gets the 408 first (RFC 9110 §15.5.9).
      const begun = socket.bytesRead > (readAtLastResponse.get(socket) ?? 0);
      if (begun) cut(socket, undefined, undefined);
      else socket.destroy();
      return;
    }
    const req = current.request.raw;
    if (!req.complete) {
      // Unread bytes are waiting in the request: we are the ones not reading (backpressure from
      // storage or the scanner), not the client. Look again after another idle period.
      if (req.readableLength > 0) return void socket.setTimeout(settings.idleMs);
      current.request.log.info('request body stopped arriving; closing the connection');
      return cut(socket, current.request, current.reply);
    }
    // The whole request is in. Response bytes we cannot hand over mean the client stopped
    // reading; otherwise the server is still working on the answer (a large upload's final
    // checks), which is not the client's fault.
    if (socket.writableLength > 0) return void socket.destroy();
    socket.setTimeout(settings.idleMs);
  });

  app.addHook('onRequest', (request, reply, done) => {
    const socket = request.raw.socket;
    // Requests injected without a connection (tests, light-my-request) have nothing to time out.
    if (!(socket instanceof Socket)) return done();
    inFlight.set(socket, { request, reply });
    if (hasBody(request) && !request.raw.complete && !isStreamed(request)) {
      const timer = setTimeout(() => {
        if (request.raw.complete || socket.destroyed) return;
        request.log.info('request body not received within the deadline; closing the connection');
        cut(socket, request, reply);
      }, settings.bodyMs);
      deadlines.set(request, timer);
    }
    done();
  });

  // A response sent before its request's body arrived in full (a refusal, an unknown route):
  // the rest of that body is not wanted, and reading it to reuse the connection would let a
  // client hold the connection as long as it trickles bytes.
  app.addHook('onSend', (request, reply, payload, done) => {
    if (hasBody(request) && !request.raw.complete) void reply.header('Connection', 'close');
    done(null, payload);
  });

  app.addHook('onResponse', (request, _reply, done) => {
    const socket = request.raw.socket;
    if (!(socket instanceof Socket)) return done();
    if (inFlight.get(socket)?.request === request) inFlight.delete(socket);
    readAtLastResponse.set(socket, socket.bytesRead);
    if (request.raw.complete) clearTimeout(deadlines.get(request));
    done();
  });
}

/** Whether the request carries a body at all (RFC 9112 §6.3: Content-Length or Transfer-Encoding). */
function hasBody(request: FastifyRequest): boolean {
  const { headers } = request.raw;
  return headers['transfer-encoding'] !== undefined || Number(headers['content-length'] ?? 0) > 0;
}

function isStreamed(request: FastifyRequest): boolean {
  const type = request.headers['content-type']?.split(';', 1)[0]?.trim().toLowerCase();
  return type !== undefined && STREAMED_TYPES.has(type);
}
