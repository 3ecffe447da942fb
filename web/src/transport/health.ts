// Client for the gateway's GET /healthz.
// Hand-written until `make types` generates these shapes into src/gen/.

export interface ComponentHealth {
  ok: boolean;
  detail: string;
}

export interface ServiceHealth extends ComponentHealth {
  /** Milliseconds since the service's last heartbeat; null if never seen. */
  last_seen_ms_ago: number | null;
}

export type ServiceName = 'canvas' | 'sessions' | 'worktrees' | 'gateway';

export interface HealthResponse {
  status: 'ok' | 'degraded';
  nats: ComponentHealth;
  postgres: ComponentHealth;
  services: Record<ServiceName, ServiceHealth>;
}

export class HealthError extends Error {
  override name = 'HealthError';
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isComponent(v: unknown): v is ComponentHealth {
  return isRecord(v) && typeof v.ok === 'boolean' && typeof v.detail === 'string';
}

export function isHealthResponse(v: unknown): v is HealthResponse {
  return (
    isRecord(v) &&
    (v.status === 'ok' || v.status === 'degraded') &&
    isComponent(v.nats) &&
    isComponent(v.postgres) &&
    isRecord(v.services) &&
    Object.values(v.services).every(isComponent)
  );
}

/**
 * Fetch /healthz. A degraded gateway may answer with a non-2xx status and a
 * well-formed body; that body is returned. Anything else throws HealthError.
 */
export async function fetchHealth(signal?: AbortSignal): Promise<HealthResponse> {
  const res = await fetch('/healthz', {
    headers: { Accept: 'application/json' },
    ...(signal ? { signal } : {}),
  });
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    throw new HealthError(`/healthz: HTTP ${res.status}, body is not JSON`);
  }
  if (!isHealthResponse(body)) {
    throw new HealthError(`/healthz: HTTP ${res.status}, unexpected body`);
  }
  return body;
}
