// The board WebSocket: a snapshot, then events and presence; it reconnects on close and
// resumes after the last seq it saw (no snapshot then, no gap, no duplicate). Each connection
// asks `url` for its address, so a reconnection carries the credentials of the moment.

export type ServerFrame = { type: string; [k: string]: unknown };

export interface BoardSocketOptions {
  slug: string;
  name: string;
  onFrame: (frame: ServerFrame) => void;
  onStatus?: (open: boolean) => void;
  retryMs?: number;
  /** The socket's URL from its path and query (auth.socketUrl adds the host and `token=`). */
  url: (path: string) => string | Promise<string>;
}

export class BoardSocket {
  private ws: WebSocket | null = null;
  private lastSeq = 0;
  private closed = false;
  private retry: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly opts: BoardSocketOptions) {
    void this.open();
  }

  private path(): string {
    const q = new URLSearchParams({ name: this.opts.name });
    if (this.lastSeq > 0) q.set('after', String(this.lastSeq));
    return `/ws/boards/${encodeURIComponent(this.opts.slug)}?${q}`;
  }

  private async open(): Promise<void> {
    let url: string | null = null;
    try {
      url = await this.opts.url(this.path());
    } catch {
      // no address this time (the gateway is unreachable): try again like a closed socket
    }
    if (this.closed) return;
    if (url === null) {
      this.reconnect();
      return;
    }
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => this.opts.onStatus?.(true);
    ws.onmessage = (msg: MessageEvent<string>) => {
      let frame: unknown;
      try {
        frame = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (typeof frame !== 'object' || frame === null || !('type' in frame)) return;
      const f = frame as ServerFrame;
      if ((f.type === 'snapshot' || f.type === 'event') && typeof f.seq === 'number') {
        this.lastSeq = Math.max(this.lastSeq, f.seq);
      }
      this.opts.onFrame(f);
    };
    ws.onclose = () => {
      this.opts.onStatus?.(false);
      if (this.ws === ws) this.ws = null;
      this.reconnect();
    };
  }

  private reconnect(): void {
    if (!this.closed) this.retry = setTimeout(() => void this.open(), this.opts.retryMs ?? 1000);
  }

  send(frame: Record<string, unknown>): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    this.ws?.close();
    this.ws = null;
  }
}
