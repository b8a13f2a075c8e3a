import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** One registry per server instance, so tests can build many apps in one process. */
export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'stowage_http_requests_total',
    help: 'HTTP requests by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'stowage_http_request_duration_seconds',
    help: 'HTTP request duration by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registers: [this.registry],
  });
  readonly logins = new Counter({
    name: 'stowage_logins_total',
    help: 'Login attempts by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly uploads = new Counter({
    name: 'stowage_uploads_total',
    help: 'Uploads by path and outcome (an error code, or "stored")',
    labelNames: ['path', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly tusCompletions = new Counter({
    name: 'stowage_tus_completions_total',
    help: 'Completed resumable uploads by how their bytes were checked: "while_received" (hashed, typed and scanned as the PATCHes arrived, never read again) or "stored_bytes" (one pass over the stored upload, after a restart or a PATCH on another instance)',
    labelNames: ['pass'] as const,
    registers: [this.registry],
  });
  readonly uploadedBytes = new Counter({
    name: 'stowage_uploaded_bytes_total',
    help: 'Bytes of stored uploads',
    registers: [this.registry],
  });

  readonly thumbnailsAhead = new Gauge({
    name: 'stowage_thumbnails_ahead_pending',
    help: 'Stored images whose default thumbnail is waiting to be rendered in the background (STOWAGE_THUMBNAILS_AHEAD)',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
