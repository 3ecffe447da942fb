import type { HealthResponse, ServiceHealth } from '../transport/health';

export interface HealthRow {
  name: string;
  ok: boolean;
  detail: string;
}

const SERVICE_ORDER = ['gateway', 'canvas', 'sessions', 'worktrees'] as const;

function describeService(s: ServiceHealth | undefined): Omit<HealthRow, 'name'> {
  if (!s) return { ok: false, detail: 'not reported' };
  const seen =
    s.last_seen_ms_ago === null
      ? 'never seen'
      : `seen ${(s.last_seen_ms_ago / 1000).toFixed(1)} s ago`;
  return { ok: s.ok, detail: s.detail ? `${s.detail} (${seen})` : seen };
}

/** Rows for display: infrastructure first, then services in a fixed order, then any others by name. */
export function healthRows(h: HealthResponse): HealthRow[] {
  const services: Partial<Record<string, ServiceHealth>> = h.services;
  const extra = Object.keys(services)
    .filter((n) => !(SERVICE_ORDER as readonly string[]).includes(n))
    .sort();
  return [
    { name: 'nats', ...h.nats },
    { name: 'postgres', ...h.postgres },
    ...[...SERVICE_ORDER, ...extra].map((name) => ({ name, ...describeService(services[name]) })),
  ];
}

/** The single row shown when /healthz itself cannot be read. */
export function unreachableRows(error: unknown): HealthRow[] {
  const detail = error instanceof Error ? error.message : String(error);
  return [{ name: 'gateway', ok: false, detail: `unreachable: ${detail}` }];
}
