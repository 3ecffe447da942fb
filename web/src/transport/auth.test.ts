import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError, Auth, type TokenPair } from './auth';

type Handler = (url: string, init: RequestInit) => Response | Promise<Response>;

function json(status: number, body: unknown): Response {
  return new Response(body === null ? null : JSON.stringify(body), { status });
}

const tokens = (n: number) => ({
  access_token: `a${n}`,
  refresh_token: `r${n}`,
  token_type: 'Bearer',
  expires_in: 900,
  user: { id: 'u', email: 'ada@example.org', name: 'Ada', emoji: '🦊', role: 'member' },
});

/** An Auth on a Map, a scripted fetch and a clock at 0 (timers are vi's fake ones). */
function setup(handler: Handler, pair?: TokenPair) {
  const store = new Map<string, string>();
  if (pair) store.set('orrery.auth', JSON.stringify(pair));
  const calls: { url: string; token: string | null; body: unknown }[] = [];
  const fetch = vi.fn(async (url: string | URL | Request, init: RequestInit = {}) => {
    const body = typeof init.body === 'string' ? JSON.parse(init.body) : undefined;
    calls.push({ url: String(url), token: new Headers(init.headers).get('Authorization'), body });
    return handler(String(url), init);
  });
  const auth = new Auth({
    fetch: fetch as typeof globalThis.fetch,
    storage: {
      getItem: (k) => store.get(k) ?? null,
      setItem: (k, v) => void store.set(k, v),
      removeItem: (k) => void store.delete(k),
    },
    now: () => Date.now(),
    random: () => 0,
    exclusive: (run) => run(),
  });
  const changes = vi.fn();
  auth.subscribe(changes);
  return { auth, calls, store, changes };
}

const pair1: TokenPair = { access: 'a1', refresh: 'r1', expiresAt: 900_000 };

describe('Auth', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  it('sends the access token; without a pair, nothing', async () => {
    const signedIn = setup(() => json(200, {}), pair1);
    await signedIn.auth.fetch('/api/boards');
    expect(signedIn.calls[0]).toMatchObject({ url: '/api/boards', token: 'Bearer a1' });

    const anonymous = setup(() => json(401, { code: 'auth.required' }));
    const res = await anonymous.auth.fetch('/api/boards');
    expect(res.status).toBe(401);
    expect(anonymous.calls).toEqual([{ url: '/api/boards', token: null, body: undefined }]);
  });

  it('on a 401 refreshes once and sends the request again with the new token', async () => {
    const { auth, calls, store } = setup(
      (url, init) =>
        url === '/api/auth/refresh'
          ? json(200, tokens(2))
          : new Headers(init.headers).get('Authorization') === 'Bearer a2'
            ? json(201, { id: 'b' })
            : json(401, { code: 'auth.required' }),
      pair1,
    );
    const res = await auth.fetch('/api/boards', { method: 'POST', body: '{"name":"x"}' });
    expect(res.status).toBe(201);
    expect(calls.map((c) => [c.url, c.token, c.body])).toEqual([
      ['/api/boards', 'Bearer a1', { name: 'x' }],
      ['/api/auth/refresh', null, { refresh_token: 'r1' }],
      ['/api/boards', 'Bearer a2', { name: 'x' }],
    ]);
    expect(JSON.parse(store.get('orrery.auth')!)).toEqual({ access: 'a2', refresh: 'r2', expiresAt: 900_000 });
  });

  it('clears the pair and tells the app when the refresh is refused', async () => {
    const { auth, calls, store, changes } = setup(
      (url) => json(401, { code: url === '/api/auth/refresh' ? 'auth.refresh_reused' : 'auth.required' }),
      pair1,
    );
    const res = await auth.fetch('/api/me');
    expect(res.status).toBe(401);
    expect(calls.map((c) => c.url)).toEqual(['/api/me', '/api/auth/refresh']); // no third try
    expect(store.has('orrery.auth')).toBe(false);
    expect(changes).toHaveBeenCalledTimes(1);
  });

  it('keeps the pair when the gateway cannot answer the refresh', async () => {
    const { auth, store, changes } = setup(
      (url) => (url === '/api/auth/refresh' ? json(503, { code: 'service.unavailable', message: 'down' }) : json(401, {})),
      pair1,
    );
    await expect(auth.fetch('/api/me')).rejects.toThrow('refresh: down');
    expect(store.has('orrery.auth')).toBe(true);
    expect(changes).not.toHaveBeenCalled();
  });

  it('refreshes once for requests refused together, and not when another tab already did', async () => {
    let refreshes = 0;
    const { auth, calls, store } = setup(async (url, init) => {
      if (url === '/api/auth/refresh') return json(200, tokens(1 + ++refreshes));
      return new Headers(init.headers).get('Authorization') === 'Bearer a1' ? json(401, {}) : json(200, {});
    }, pair1);
    const answers = await Promise.all([auth.fetch('/api/boards'), auth.fetch('/api/worktrees')]);
    expect(answers.map((r) => r.status)).toEqual([200, 200]);
    expect(refreshes).toBe(1);

    // another tab rotated the pair (a2 -> a9) after a request went out with a2: no second refresh
    store.set('orrery.auth', JSON.stringify({ access: 'a9', refresh: 'r9', expiresAt: 900_000 }));
    expect(await auth.refresh('a2')).toBe(true);
    expect(auth.pair()?.access).toBe('a9');
    expect(calls.filter((c) => c.url === '/api/auth/refresh')).toHaveLength(1);
  });

  it('refreshes shortly before the access token expires, then plans the next one', async () => {
    const { auth, calls } = setup((url) => (url === '/api/auth/refresh' ? json(200, tokens(2)) : json(200, {})), pair1);
    auth.sync();
    await vi.advanceTimersByTimeAsync(900_000 - 60_000 - 1);
    expect(calls).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls.map((c) => c.body)).toEqual([{ refresh_token: 'r1' }]);
    expect(auth.pair()).toEqual({ access: 'a2', refresh: 'r2', expiresAt: 840_000 + 900_000 });
    await vi.advanceTimersByTimeAsync(840_000);
    expect(calls).toHaveLength(2);
  });

  it('signs in, reports the API error (rate limiting included), and signs out', async () => {
    let answer = json(429, {
      code: 'auth.rate_limited',
      message: 'too many failed sign-ins; try again in 42 s',
      detail: { retry_after: 42 },
    });
    const { auth, calls, changes } = setup((url) => (url === '/api/auth/login' ? answer : json(204, null)));
    const err = await auth.signIn('ada@example.org', 'pw').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({
      status: 429,
      code: 'auth.rate_limited',
      message: 'too many failed sign-ins; try again in 42 s',
      detail: { retry_after: 42 },
    });
    expect(auth.pair()).toBeNull();

    answer = json(200, tokens(1));
    expect((await auth.signIn('ada@example.org', 'secret-pw')).name).toBe('Ada');
    expect(auth.pair()).toEqual(pair1);
    expect(changes).toHaveBeenCalledTimes(1);

    await auth.signOut();
    expect(auth.pair()).toBeNull();
    expect(changes).toHaveBeenCalledTimes(2);
    expect(calls.at(-1)).toMatchObject({ url: '/api/auth/logout', body: { refresh_token: 'r1' } });
  });

  it('makes socket URLs with the token, refreshing one about to expire', async () => {
    vi.stubGlobal('location', { protocol: 'https:', host: 'orrery.example.org' });
    const { auth } = setup(() => json(200, tokens(2)), { ...pair1, expiresAt: 5_000 });
    expect(await auth.socketUrl('/ws/boards/b?name=Ada')).toBe('wss://orrery.example.org/ws/boards/b?name=Ada&token=a2');
    expect(await auth.socketUrl('/ws/sessions/s')).toBe('wss://orrery.example.org/ws/sessions/s?token=a2');
    const anonymous = setup(() => json(500, {}));
    expect(await anonymous.auth.socketUrl('/ws/sessions/s')).toBe('wss://orrery.example.org/ws/sessions/s');
  });
});
