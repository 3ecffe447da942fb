import { useCallback, useEffect, useMemo, useReducer, useRef, useState } from 'react';
import {
  App as AntApp,
  Avatar,
  Button,
  Form,
  Input,
  Modal,
  Select,
  Space,
  Tooltip,
  Typography,
} from 'antd';
import {
  Background,
  Controls,
  MiniMap,
  ReactFlow,
  ReactFlowProvider,
  ViewportPortal,
  applyNodeChanges,
  useReactFlow,
  type NodeChange,
  type OnNodeDrag,
} from '@xyflow/react';
import { offeredTrigger, reduceBoard, type BoardFrame, type BoardState } from '../domain/board';
import {
  boardNodes,
  mergeNodes,
  parseNodeId,
  type BoardNode,
} from '../domain/flow';
import {
  emptyPresence,
  initials,
  reducePresence,
  visibleCursors,
  type PresenceFrame,
  type PresenceState,
} from '../domain/presence';
import { commandId } from '../domain/route';
import { throttle } from '../domain/throttle';
import { socketUrl } from '../transport/auth';
import { BoardSocket, type ServerFrame } from '../transport/boardSocket';
import { addZone, listWorktrees, placeCard, type Worktree } from '../transport/canvas';
import { nodeTypes } from './nodes';
import { TriggerPicker } from './TriggerPicker';
import { ZoneDelete } from './ZoneDelete';

const PRESENCE_FRAMES = new Set(['presence', 'joined', 'left', 'cursor', 'drag', 'event']);

function colorFor(name: string): string {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return `hsl(${h}, 65%, 45%)`;
}

function Facepile({ presence, me }: { presence: PresenceState; me: string }) {
  const people = [
    { key: 'me', name: `${me} (you)`, label: me },
    ...Object.values(presence.viewers).map((v) => ({ key: v.connection, name: v.name, label: v.name })),
  ];
  return (
    <Avatar.Group max={{ count: 6 }} size="small" className="orrery-facepile">
      {people.map((p) => (
        <Tooltip key={p.key} title={p.name}>
          <Avatar style={{ backgroundColor: colorFor(p.label) }}>{initials(p.label)}</Avatar>
        </Tooltip>
      ))}
    </Avatar.Group>
  );
}

function Cursors({ presence }: { presence: PresenceState }) {
  return (
    <ViewportPortal>
      {visibleCursors(presence).map((v) => (
        <div
          key={v.connection}
          className="orrery-cursor"
          data-testid={`cursor-${v.name}`}
          style={{
            position: 'absolute',
            transform: `translate(${v.x}px, ${v.y}px)`,
            pointerEvents: 'none',
            zIndex: 2000,
          }}
        >
          <div
            style={{ width: 10, height: 10, borderRadius: 5, background: colorFor(v.name), marginLeft: -5, marginTop: -5 }}
          />
          <div
            style={{
              background: colorFor(v.name),
              color: '#fff',
              fontSize: 11,
              padding: '0 4px',
              borderRadius: 3,
              whiteSpace: 'nowrap',
              marginLeft: 6,
            }}
          >
            {v.emoji ? `${v.emoji} ` : ''}
            {v.name}
          </div>
        </div>
      ))}
    </ViewportPortal>
  );
}

interface ZoneForm {
  label: string;
  template?: string;
  behavior: 'always_new' | 'show_picker';
}

function Toolbar({
  slug,
  board,
  worktrees,
  centre,
}: {
  slug: string;
  board: BoardState | null;
  worktrees: Worktree[];
  centre: () => { x: number; y: number };
}) {
  const { message } = AntApp.useApp();
  const [zoneOpen, setZoneOpen] = useState(false);
  const [form] = Form.useForm<ZoneForm>();
  const [placing, setPlacing] = useState<string | null>(null);
  const free = worktrees.filter((w) => !board || !(w.id in board.cards));

  const submitZone = async () => {
    const v = await form.validateFields();
    const c = centre();
    const template = v.template?.trim();
    try {
      await addZone(slug, {
        label: v.label,
        x: Math.round(c.x - 300),
        y: Math.round(c.y - 200),
        width: 600,
        height: 400,
        ...(template ? { trigger: { template, behavior: v.behavior } } : {}),
      });
      setZoneOpen(false);
      form.resetFields();
    } catch (err) {
      void message.error(String(err instanceof Error ? err.message : err));
    }
  };

  const place = async (id: string) => {
    const c = centre();
    setPlacing(id);
    try {
      await placeCard(slug, id, Math.round(c.x - 120), Math.round(c.y - 60));
    } catch (err) {
      void message.error(String(err instanceof Error ? err.message : err));
    } finally {
      setPlacing(null);
    }
  };

  return (
    <>
      <Button onClick={() => setZoneOpen(true)}>Add zone</Button>
      <Select
        placeholder="Place worktree"
        style={{ minWidth: 200 }}
        value={placing}
        loading={placing !== null}
        options={free.map((w) => ({ value: w.id, label: w.repo_slug ? `${w.repo_slug}/${w.name}` : w.name }))}
        onChange={(id: string) => void place(id)}
        notFoundContent="no worktree left to place"
      />
      <Modal
        title="Add zone"
        open={zoneOpen}
        okText="Add"
        onOk={() => void submitZone()}
        onCancel={() => setZoneOpen(false)}
        destroyOnHidden
      >
        <Form form={form} layout="vertical" initialValues={{ behavior: 'show_picker' }} preserve={false}>
          <Form.Item name="label" label="Label" rules={[{ required: true, message: 'a label' }]}>
            <Input autoFocus />
          </Form.Item>
          <Form.Item name="template" label="Trigger template (optional)">
            <Input.TextArea rows={3} placeholder="Review {{ worktree.name }}" />
          </Form.Item>
          <Form.Item name="behavior" label="When a card enters">
            <Select
              options={[
                { value: 'show_picker', label: 'show the picker' },
                { value: 'always_new', label: 'always start a new session' },
              ]}
            />
          </Form.Item>
        </Form>
      </Modal>
    </>
  );
}

/** `editable`: the viewer may change the board (a viewer role sees it without the edit tools). */
function Board({ slug, name, editable }: { slug: string; name: string; editable: boolean }) {
  const { message } = AntApp.useApp();
  const flow = useReactFlow<BoardNode>();
  const [board, dispatchBoard] = useReducer(reduceBoard, null);
  const [presence, dispatchPresence] = useReducer(reducePresence, emptyPresence);
  const [connected, setConnected] = useState(false);
  const [nodes, setNodes] = useState<BoardNode[]>([]);
  const [reset, setReset] = useState(0);
  const [worktrees, setWorktrees] = useState<Worktree[]>([]);
  const [deleting, setDeleting] = useState<string | null>(null);
  const socket = useRef<BoardSocket | null>(null);
  const wrapper = useRef<HTMLDivElement | null>(null);
  const toast = useRef(message);
  useEffect(() => {
    toast.current = message;
  }, [message]);

  useEffect(() => {
    const s = new BoardSocket({
      slug,
      name,
      url: socketUrl,
      onStatus: setConnected,
      onFrame: (f: ServerFrame) => {
        if (f.type === 'snapshot' || f.type === 'event') dispatchBoard(f as unknown as BoardFrame);
        if (PRESENCE_FRAMES.has(f.type)) dispatchPresence(f as unknown as PresenceFrame);
        if (f.type === 'rejected') {
          void toast.current.error(`${String(f.code)}: ${String(f.message ?? '')}`);
          setReset((n) => n + 1); // put back what was dragged
        } else if (f.type === 'error') {
          void toast.current.error(`${String(f.code)}: ${String(f.message ?? '')}`);
        }
      },
    });
    socket.current = s;
    return () => {
      s.close();
      socket.current = null;
    };
  }, [slug, name]);

  // Worktree names: fetched again when a card of an unknown worktree shows up.
  const names = useMemo(() => Object.fromEntries(worktrees.map((w) => [w.id, w.name])), [worktrees]);
  const unknown = board
    ? Object.keys(board.cards)
        .filter((id) => !(id in names))
        .sort()
        .join(',')
    : '';
  useEffect(() => {
    let live = true;
    listWorktrees()
      .then((ws) => live && setWorktrees(ws))
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [unknown]);

  useEffect(() => {
    if (!board) return;
    setNodes((prev) => mergeNodes(prev, boardNodes(board, presence, names)));
  }, [board, presence.drags, presence.viewers, names, reset]);

  const onNodesChange = useCallback((changes: NodeChange<BoardNode>[]) => {
    setNodes((ns) => applyNodeChanges(changes, ns));
  }, []);

  const send = useCallback((frame: Record<string, unknown>) => socket.current?.send(frame), []);
  const sendCursor = useMemo(() => throttle((x: number, y: number) => send({ type: 'cursor', x, y }), 100), [send]);
  const sendDrag = useMemo(
    () => throttle((worktree_id: string, x: number, y: number) => send({ type: 'drag', worktree_id, x, y }), 50),
    [send],
  );
  useEffect(() => () => {
    sendCursor.cancel();
    sendDrag.cancel();
  }, [sendCursor, sendDrag]);

  const absolute = useCallback(
    (id: string) => {
      const pos = flow.getInternalNode(id)?.internals.positionAbsolute;
      return pos ? { x: Math.round(pos.x), y: Math.round(pos.y) } : null;
    },
    [flow],
  );

  const onNodeDrag: OnNodeDrag<BoardNode> = useCallback(
    (_e, node) => {
      const what = parseNodeId(node.id);
      const pos = absolute(node.id);
      if (what?.kind === 'card' && pos) sendDrag(what.id, pos.x, pos.y);
    },
    [absolute, sendDrag],
  );

  const onNodeDragStop: OnNodeDrag<BoardNode> = useCallback(
    (_e, node) => {
      const what = parseNodeId(node.id);
      const pos = absolute(node.id);
      if (!what || !pos) return;
      let command: Record<string, unknown>;
      if (what.kind === 'card') {
        sendDrag.cancel();
        command = { type: 'canvas.MoveCard', worktree_id: what.id, ...pos };
      } else if (what.kind === 'zone') {
        command = { type: 'canvas.UpdateZone', zone_id: what.id, ...pos };
      } else {
        command = { type: 'canvas.UpdateNote', note_id: what.id, ...pos };
      }
      if (!send({ type: 'command', id: commandId(), command })) {
        void message.error('not connected: the move was not sent');
        setReset((n) => n + 1);
      }
    },
    [absolute, send, sendDrag, message],
  );

  const onPointerMove = (e: React.PointerEvent) => {
    const p = flow.screenToFlowPosition({ x: e.clientX, y: e.clientY });
    sendCursor(Math.round(p.x), Math.round(p.y));
  };
  const onPointerLeave = () => {
    sendCursor.cancel();
    send({ type: 'leave' });
  };

  const centre = useCallback(() => {
    const r = wrapper.current?.getBoundingClientRect();
    if (!r) return { x: 0, y: 0 };
    return flow.screenToFlowPosition({ x: r.left + r.width / 2, y: r.top + r.height / 2 });
  }, [flow]);

  const offered = offeredTrigger(board);
  const fitted = useRef(false);
  useEffect(() => {
    if (board && !fitted.current && nodes.length > 0) {
      fitted.current = true;
      requestAnimationFrame(() => void flow.fitView({ padding: 0.2, maxZoom: 1 }));
    }
  }, [board, nodes.length, flow]);

  return (
    <div style={{ display: 'flex', flexDirection: 'column', height: '100%' }}>
      <Space style={{ padding: '4px 16px' }} wrap>
        <Typography.Text strong className="orrery-board-name">
          {board?.board.name ?? slug}
        </Typography.Text>
        <Typography.Text type={connected ? 'secondary' : 'warning'}>
          {connected ? 'live' : 'connecting…'}
        </Typography.Text>
        {board?.deleted ? <Typography.Text type="danger">this board was deleted</Typography.Text> : null}
        {editable ? <Toolbar slug={slug} board={board} worktrees={worktrees} centre={centre} /> : null}
        <Facepile presence={presence} me={name} />
      </Space>
      <div
        ref={wrapper}
        style={{ flex: 1, minHeight: 0 }}
        onPointerMove={onPointerMove}
        onPointerLeave={onPointerLeave}
      >
        <ReactFlow<BoardNode>
          nodes={nodes}
          nodeTypes={nodeTypes}
          onNodesChange={onNodesChange}
          onNodeDrag={onNodeDrag}
          onNodeDragStop={onNodeDragStop}
          nodesDraggable={editable}
          onNodeContextMenu={(event, node) => {
            const parsed = parseNodeId(node.id);
            if (!editable || parsed?.kind !== 'zone') return;
            event.preventDefault();
            setDeleting(parsed.id);
          }}
          elevateNodesOnSelect={false}
          minZoom={0.1}
          fitView
        >
          <Background />
          <Controls />
          <MiniMap pannable zoomable />
          <Cursors presence={presence} />
        </ReactFlow>
      </div>
      <TriggerPicker slug={slug} trigger={editable ? offered : null} />
      <ZoneDelete slug={slug} board={board} zoneId={deleting} onClose={() => setDeleting(null)} />
    </div>
  );
}

export function BoardView({ slug, name, editable }: { slug: string; name: string; editable: boolean }) {
  return (
    <ReactFlowProvider>
      <Board slug={slug} name={name} editable={editable} />
    </ReactFlowProvider>
  );
}
