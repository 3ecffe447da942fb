// REST calls of the gateway's canvas API (services/gateway/README.md, "REST and WebSocket").

import { apiError, authFetch } from './auth';

export interface BoardSummary {
  id: string;
  name: string;
  slug: string;
}

export interface Worktree {
  id: string;
  name: string;
  repo_slug?: string;
}

export interface TriggerIn {
  template: string;
  behavior: 'always_new' | 'show_picker';
}

export interface ZoneIn {
  label: string;
  x: number;
  y: number;
  width: number;
  height: number;
  trigger?: TriggerIn;
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { Accept: 'application/json', 'Content-Type': 'application/json' };
  }
  const res = await authFetch(path, init);
  if (!res.ok) throw await apiError(res, `${method} ${path}: `);
  try {
    return (await res.json()) as T;
  } catch {
    return null as T; // an empty or non-JSON body
  }
}

const board = (slug: string) => `/api/boards/${encodeURIComponent(slug)}`;

export const listBoards = () => call<BoardSummary[]>('GET', '/api/boards');
export const createBoard = (name: string) => call<BoardSummary>('POST', '/api/boards', { name });
export const listWorktrees = () => call<Worktree[]>('GET', '/api/worktrees');
export const addZone = (slug: string, zone: ZoneIn) =>
  call<unknown>('POST', `${board(slug)}/zones`, zone);
export const placeCard = (slug: string, worktreeId: string, x: number, y: number) =>
  call<unknown>('PUT', `${board(slug)}/cards/${encodeURIComponent(worktreeId)}`, { x, y });
export const chooseTrigger = (slug: string, triggerId: string, prompt: string) =>
  call<unknown>('POST', `${board(slug)}/triggers/${encodeURIComponent(triggerId)}/choose`, {
    action: 'new_session',
    prompt,
  });
export const dismissTrigger = (slug: string, triggerId: string) =>
  call<unknown>('POST', `${board(slug)}/triggers/${encodeURIComponent(triggerId)}/dismiss`);
export const deleteZone = (slug: string, zoneId: string, cards: 'refuse' | 'unpin' | 'remove') =>
  call<unknown>('DELETE', `${board(slug)}/zones/${encodeURIComponent(zoneId)}?cards=${cards}`);
