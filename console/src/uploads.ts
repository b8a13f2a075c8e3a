import { Upload, type DetailedError } from 'tus-js-client';
import { session } from './api';

const MiB = 1024 * 1024;

export interface UploadState {
  key: string;
  name: string;
  sent: number;
  total: number;
  error: string | null;
  done: boolean;
  cancel: () => void;
}

/** The server's words for a refused upload: the contract's error message from the tus answer. */
function messageOfTus(error: Error): string {
  const res = (error as DetailedError).originalResponse;
  if (res) {
    try {
      const body = JSON.parse(res.getBody()) as { error?: { message?: string } };
      if (body.error?.message) return body.error.message;
    } catch {
      // not JSON: fall through
    }
    return `The server answered ${res.getStatus()}.`;
  }
  return 'The upload was interrupted and could not be resumed.';
}

/**
 * One file through tus: resumable (a dropped connection resumes from the server's offset), in
 * parallel parts for large files (the server offers concatenation). Nothing is kept in
 * localStorage: resuming across reloads would need the upload URLs stored there.
 */
export function startUpload(
  file: File,
  onChange: (state: UploadState) => void,
  onDone: () => void,
): UploadState {
  const state: UploadState = {
    key: `${file.name}-${file.size}-${Math.random().toString(36).slice(2)}`,
    name: file.name,
    sent: 0,
    total: file.size,
    error: null,
    done: false,
    cancel: () => undefined,
  };
  const update = (patch: Partial<UploadState>) => onChange(Object.assign(state, patch));
  const upload = new Upload(file, {
    endpoint: '/api/media/uploads',
    chunkSize: 8 * MiB,
    parallelUploads: file.size >= 64 * MiB ? 4 : 1,
    retryDelays: [0, 1000, 3000, 5000, 10000],
    storeFingerprintForResuming: false,
    metadata: { filename: file.name, filetype: file.type || 'application/octet-stream' },
    onBeforeRequest: async (req) => {
      const token = await session.validToken();
      if (token) req.setHeader('Authorization', `Bearer ${token}`);
    },
    // A refusal (4xx other than a lost lock) will not change on retry: show it at once.
    onShouldRetry: (err) => {
      const status = err.originalResponse?.getStatus() ?? 0;
      return status === 0 || status === 409 || status === 423 || status >= 500;
    },
    onProgress: (sent, total) => update({ sent, total }),
    onError: (error) => update({ error: messageOfTus(error) }),
    onSuccess: () => {
      update({ done: true, sent: state.total });
      onDone();
    },
  });
  state.cancel = () => {
    void upload.abort(true);
    update({ error: 'Cancelled.' });
  };
  upload.start();
  return state;
}
