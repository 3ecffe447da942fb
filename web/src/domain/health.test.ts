import { describe, expect, it } from 'vitest';
import type { HealthResponse } from '../transport/health';
import { healthRows, unreachableRows } from './health';

function sample(): HealthResponse {
  return {
    status: 'degraded',
    nats: { ok: true, detail: 'connected' },
    postgres: { ok: false, detail: 'connection refused' },
    services: {
      canvas: { ok: true, last_seen_ms_ago: 1234, detail: '' },
      sessions: { ok: false, last_seen_ms_ago: null, detail: 'no heartbeat' },
      worktrees: { ok: true, last_seen_ms_ago: 0, detail: 'ready' },
      gateway: { ok: true, last_seen_ms_ago: 10, detail: 'self' },
    },
  };
}

describe('healthRows', () => {
  it('lists infrastructure first, then services in a fixed order', () => {
    expect(healthRows(sample()).map((r) => r.name)).toEqual([
      'nats',
      'postgres',
      'gateway',
      'canvas',
      'sessions',
      'worktrees',
    ]);
  });

  it('carries ok flags and details through', () => {
    const rows = healthRows(sample());
    expect(rows[0]).toEqual({ name: 'nats', ok: true, detail: 'connected' });
    expect(rows[1]).toEqual({ name: 'postgres', ok: false, detail: 'connection refused' });
  });

  it('describes when each service was last seen', () => {
    const byName = Object.fromEntries(healthRows(sample()).map((r) => [r.name, r]));
    expect(byName.canvas).toEqual({ name: 'canvas', ok: true, detail: 'seen 1.2 s ago' });
    expect(byName.sessions).toEqual({
      name: 'sessions',
      ok: false,
      detail: 'no heartbeat (never seen)',
    });
    expect(byName.worktrees?.detail).toBe('ready (seen 0.0 s ago)');
  });

  it('marks a missing service as down and appends unknown ones by name', () => {
    const h = sample();
    const services: Record<string, unknown> = { ...h.services, zeta: h.services.canvas, alpha: h.services.canvas };
    delete services.worktrees;
    const rows = healthRows({ ...h, services: services as HealthResponse['services'] });
    expect(rows.map((r) => r.name).slice(-3)).toEqual(['worktrees', 'alpha', 'zeta']);
    expect(rows.find((r) => r.name === 'worktrees')).toEqual({
      name: 'worktrees',
      ok: false,
      detail: 'not reported',
    });
  });
});

describe('unreachableRows', () => {
  it('reports the gateway as down with the error message', () => {
    expect(unreachableRows(new Error('HTTP 502'))).toEqual([
      { name: 'gateway', ok: false, detail: 'unreachable: HTTP 502' },
    ]);
  });
});
