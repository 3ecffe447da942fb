import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BoardSocket, type ServerFrame } from './boardSocket';

class FakeSocket {
  static OPEN = 1;
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: string[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((m: { data: string }) => void) | null = null;
  onclose: (() => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  send(data: string) {
    this.sent.push(data);
  }
  close() {
    this.readyState = 3;
    this.onclose?.();
  }
  receive(frame: object) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
}

describe('BoardSocket', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    FakeSocket.all = [];
    vi.stubGlobal('WebSocket', FakeSocket);
  });
  afterEach(() => {
    vi.unstubAllGlobals();
    vi.useRealTimers();
  });

  it('resumes after the last seq it saw when the socket closes, with the URL of the moment', async () => {
    const frames: ServerFrame[] = [];
    let token = 'one';
    const s = new BoardSocket({
      slug: 'sprint 1',
      name: 'Ada',
      onFrame: (f) => frames.push(f),
      url: async (path) => `ws://example.org:8765${path}&token=${token}`,
    });
    await vi.advanceTimersByTimeAsync(0);
    const first = FakeSocket.all[0]!;
    expect(first.url).toBe('ws://example.org:8765/ws/boards/sprint%201?name=Ada&token=one');
    first.receive({ type: 'snapshot', seq: 4, board: {} });
    first.receive({ type: 'event', seq: 7, event_type: 'canvas.CardMoved', event: {} });
    first.receive({ type: 'cursor', connection: 'c', x: 1, y: 2 });
    expect(frames.map((f) => f.type)).toEqual(['snapshot', 'event', 'cursor']);

    token = 'two'; // refreshed meanwhile
    first.close(); // the server went away
    await vi.advanceTimersByTimeAsync(1000);
    expect(FakeSocket.all[1]?.url).toBe('ws://example.org:8765/ws/boards/sprint%201?name=Ada&after=7&token=two');

    const second = FakeSocket.all[1]!;
    expect(s.send({ type: 'leave' })).toBe(false); // not open yet
    second.readyState = FakeSocket.OPEN;
    expect(s.send({ type: 'leave' })).toBe(true);
    expect(second.sent).toEqual(['{"type":"leave"}']);

    s.close(); // closed on purpose: no reconnection
    await vi.advanceTimersByTimeAsync(5000);
    expect(FakeSocket.all).toHaveLength(2);
  });

  it('tries again when no URL could be made, and not once closed', async () => {
    let fail = true;
    const s = new BoardSocket({
      slug: 'b',
      name: 'Ada',
      onFrame: () => undefined,
      url: async (path) => {
        if (fail) throw new Error('gateway unreachable');
        return `ws://h${path}`;
      },
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(FakeSocket.all).toHaveLength(0);
    fail = false;
    await vi.advanceTimersByTimeAsync(1000);
    expect(FakeSocket.all.map((f) => f.url)).toEqual(['ws://h/ws/boards/b?name=Ada']);
    s.close();
    const late = new BoardSocket({ slug: 'b', name: 'Ada', onFrame: () => undefined, url: async (p) => `ws://h${p}` });
    late.close(); // before its URL arrived
    await vi.advanceTimersByTimeAsync(5000);
    expect(FakeSocket.all).toHaveLength(1);
  });
});
