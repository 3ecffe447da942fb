// Signing in to the gateway (services/gateway/README.md; users.py, auth.py): the token pair in
// localStorage, every /api call with `Authorization: Bearer`, every socket with `?token=` (a
// browser cannot give a WebSocket headers), the access token refreshed shortly before it expires
// and once on a 401. In anonymous (loopback) mode there is no pair and nothing is added.

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | null,
    readonly detail: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** The gateway's error body `{code, message, detail}` as an ApiError (`prefix` leads the message). */
export async function apiError(res: Response, prefix = ''): Promise<ApiError> {
  let body: { code?: unknown; message?: unknown; detail?: unknown } = {};
  try {
    body = ((await res.json()) ?? {}) as typeof body;
  } catch {
    // an empty or non-JSON body
  }
  const message = typeof body.message === 'string' ? body.message : `HTTP ${res.status}`;
  const detail = typeof body.detail === 'object' && body.detail !== null ? body.detail : {};
  return new ApiError(
    prefix + message,
    res.status,
    typeof body.code === 'string' ? body.code : null,
    detail as Record<string, unknown>,
  );
}

export type Role = 'viewer' | 'member' | 'admin' | 'owner';

/** GET /api/me. */
export interface Me {
  id: string;
  email: string;
  name: string;
  role: Role;
  /** anonymous (loopback mode), access (a signed-in token) or api_key. */
  via: string;
  auth_mode: 'anonymous' | 'required';
}

export interface User {
  id: string;
  email: string;
  name: string;
  emoji: string;
  role: Role;
}

interface TokensOut {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  user: User;
}

export interface TokenPair {
  access: string;
  refresh: string;
  /** When the access token expires, in ms since the epoch. */
  expiresAt: number;
}

export interface AuthDeps {
  fetch: typeof fetch;
  storage: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>;
  now: () => number;
  /** Runs the refresh alone among this browser's tabs (they share the pair, and a refresh token
   * presented twice ends the sign-in everywhere). */
  exclusive: <T>(run: () => Promise<T>) => Promise<T>;
  random: () => number;
}

const KEY = 'orrery.auth';
/** Refresh this long (plus up to JITTER_MS, so tabs rarely race) before the access token expires. */
const EARLY_MS = 60_000;
const JITTER_MS = 30_000;
/** A scheduled refresh that could not reach the gateway is tried again after this long. */
const RETRY_MS = 30_000;
const JSON_HEADERS = { Accept: 'application/json', 'Content-Type': 'application/json' };

function withToken(init: RequestInit, token: string | undefined): RequestInit {
  if (!token) return init;
  const headers = new Headers(init.headers);
  headers.set('Authorization', `Bearer ${token}`);
  return { ...init, headers };
}

export class Auth {
  private inflight: Promise<boolean> | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private signedIn: boolean;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly d: AuthDeps) {
    this.signedIn = this.pair() !== null;
  }

  /** The stored pair. Read each time: another tab may have rotated it. */
  pair(): TokenPair | null {
    try {
      const v = JSON.parse(this.d.storage.getItem(KEY) ?? 'null') as TokenPair | null;
      return v && typeof v.access === 'string' && typeof v.refresh === 'string' ? v : null;
    } catch {
      return null;
    }
  }

  /** `fn` runs whenever a pair appears or goes (signed in, signed out, refresh refused, another
   * tab); the answer unsubscribes. */
  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** A fetch with the access token; on a 401 the token is refreshed once and the request sent
   * again (so `init.body` must be a string or absent). A refused refresh clears the pair. */
  readonly fetch = async (input: string, init: RequestInit = {}): Promise<Response> => {
    const used = this.pair();
    const res = await this.d.fetch(input, withToken(init, used?.access));
    if (res.status !== 401 || !used) return res;
    if (!(await this.refresh(used.access))) return res;
    return this.d.fetch(input, withToken(init, this.pair()?.access));
  };

  /** The WebSocket URL of `path` (with its query) on this host, with `token=` when signed in;
   * an access token about to expire is refreshed first. */
  readonly socketUrl = async (path: string): Promise<string> => {
    let pair = this.pair();
    if (pair && pair.expiresAt - this.d.now() < 10_000) {
      try {
        await this.refresh(pair.access);
      } catch {
        // the gateway is not reachable: the socket will not be either, and retries
      }
      pair = this.pair();
    }
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    const token = pair ? `${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(pair.access)}` : '';
    return `${proto}://${location.host}${path}${token}`;
  };

  /** Trade the refresh token for a new pair, unless the access token is no longer `stale`
   * (refreshed meanwhile). True when a valid pair is stored; false when it was refused (the pair
   * is cleared); throws when the gateway could not answer (the pair is kept). */
  refresh(stale: string): Promise<boolean> {
    this.inflight ??= this.d
      .exclusive(async () => {
        const pair = this.pair();
        if (!pair) return false;
        if (pair.access !== stale) return true;
        const res = await this.d.fetch('/api/auth/refresh', {
          method: 'POST',
          headers: JSON_HEADERS,
          body: JSON.stringify({ refresh_token: pair.refresh }),
        });
        if (res.ok) {
          this.store((await res.json()) as TokensOut);
          return true;
        }
        if (res.status === 400 || res.status === 401) {
          this.clear();
          return false;
        }
        throw await apiError(res, 'refresh: ');
      })
      .finally(() => {
        this.inflight = null;
      });
    return this.inflight;
  }

  signIn = (email: string, password: string): Promise<User> =>
    this.obtain('/api/auth/login', { email, password });

  /** Create the first owner (only when the gateway has no users: else 409 auth.setup_done). */
  setUp = (email: string, password: string, name: string): Promise<User> =>
    this.obtain('/api/auth/setup', { email, password, name });

  /** Forget the pair at once, then end the sign-in on the gateway (best effort). */
  signOut = async (): Promise<void> => {
    const pair = this.pair();
    this.clear();
    if (!pair) return;
    try {
      await this.d.fetch('/api/auth/logout', {
        method: 'POST',
        headers: JSON_HEADERS,
        body: JSON.stringify({ refresh_token: pair.refresh }),
      });
    } catch {
      // unreachable: the refresh token expires on its own
    }
  };

  /** Plan the next refresh from the stored pair, and tell the listeners if signing in changed
   * (call when the stored pair may have changed behind our back: at start, on a storage event). */
  sync(): void {
    clearTimeout(this.timer);
    const pair = this.pair();
    if (pair) {
      const wait = pair.expiresAt - EARLY_MS - this.d.random() * JITTER_MS - this.d.now();
      this.timer = setTimeout(() => {
        this.refresh(pair.access).then(
          () => this.sync(),
          () => (this.timer = setTimeout(() => this.sync(), RETRY_MS)),
        );
      }, Math.max(0, wait));
    }
    if (this.signedIn !== (pair !== null)) {
      this.signedIn = pair !== null;
      for (const fn of [...this.listeners]) fn();
    }
  }

  private async obtain(path: string, body: Record<string, string>): Promise<User> {
    const res = await this.d.fetch(path, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify(body) });
    if (!res.ok) throw await apiError(res);
    const out = (await res.json()) as TokensOut;
    this.store(out);
    return out.user;
  }

  private store(out: TokensOut): void {
    const pair: TokenPair = {
      access: out.access_token,
      refresh: out.refresh_token,
      expiresAt: this.d.now() + out.expires_in * 1000,
    };
    this.d.storage.setItem(KEY, JSON.stringify(pair));
    this.sync();
  }

  private clear(): void {
    this.d.storage.removeItem(KEY);
    this.sync();
  }
}

function browserAuth(): Auth {
  const auth = new Auth({
    fetch: (input, init) => fetch(input, init),
    storage: localStorage,
    now: Date.now,
    random: Math.random,
    // Web Locks exist in secure contexts (https, localhost); elsewhere the jitter has to do.
    exclusive: (run) => (navigator.locks ? navigator.locks.request(KEY, run) : run()),
  });
  window.addEventListener('storage', (e) => {
    if (e.key === KEY || e.key === null) auth.sync();
  });
  auth.sync();
  return auth;
}

let instance: Auth | null = null;

/** The page's one Auth (made on first use, so importing this module touches no browser API). */
export function auth(): Auth {
  return (instance ??= browserAuth());
}

export const authFetch = (input: string, init?: RequestInit) => auth().fetch(input, init);
export const socketUrl = (path: string) => auth().socketUrl(path);

/** GET /api/me: who we are, or null when credentials are needed (401). Throws when the gateway
 * does not answer. */
export async function fetchMe(): Promise<Me | null> {
  const res = await authFetch('/api/me', { headers: { Accept: 'application/json' } });
  if (res.status === 401) return null;
  if (!res.ok) throw await apiError(res, 'GET /api/me: ');
  return (await res.json()) as Me;
}

/** Whether `role` may change boards (member and up). Unknown (gateway unreachable): yes. */
export function canEdit(role: Role | undefined): boolean {
  return role !== 'viewer';
}
