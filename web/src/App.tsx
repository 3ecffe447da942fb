import { useCallback, useEffect, useState } from 'react';
import {
  App as AntApp,
  Button,
  Form,
  Input,
  Layout,
  Modal,
  Select,
  Space,
  Tag,
  Tooltip,
  Typography,
} from 'antd';
import { Background, Controls, ReactFlow } from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import { healthRows, unreachableRows, type HealthRow } from './domain/health';
import { boardFromHash, hashForBoard } from './domain/route';
import { fetchHealth } from './transport/health';
import { createBoard, listBoards, type BoardSummary } from './transport/canvas';
import { BoardView } from './ui/BoardView';

const POLL_MS = 2000;

function useHealthRows(): HealthRow[] | null {
  const [rows, setRows] = useState<HealthRow[] | null>(null);
  useEffect(() => {
    const ctrl = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = async () => {
      try {
        setRows(healthRows(await fetchHealth(ctrl.signal)));
      } catch (err) {
        if (ctrl.signal.aborted) return;
        setRows(unreachableRows(err));
      }
      timer = setTimeout(() => void poll(), POLL_MS);
    };
    void poll();
    return () => {
      ctrl.abort();
      clearTimeout(timer);
    };
  }, []);
  return rows;
}

function StatusPanel() {
  const rows = useHealthRows();
  return (
    <Space wrap size={[4, 4]} style={{ padding: '8px 16px' }}>
      {rows === null ? (
        <Tag>checking…</Tag>
      ) : (
        rows.map((r) => (
          <Tooltip key={r.name} title={r.detail || undefined}>
            <Tag color={r.ok ? 'green' : 'red'}>{r.name}</Tag>
          </Tooltip>
        ))
      )}
    </Space>
  );
}

function useHashBoard(): [string | null, (slug: string) => void] {
  const [slug, setSlug] = useState(() => boardFromHash(location.hash));
  useEffect(() => {
    const on = () => setSlug(boardFromHash(location.hash));
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  const go = useCallback((next: string) => {
    location.hash = hashForBoard(next);
  }, []);
  return [slug, go];
}

/** The name other viewers see: `?name=` in the URL, else the one kept from last time. */
function viewerName(): string {
  const fromUrl = new URLSearchParams(location.search).get('name')?.trim();
  if (fromUrl) return fromUrl;
  const kept = localStorage.getItem('orrery.name');
  if (kept) return kept;
  const made = `guest-${Math.random().toString(36).slice(2, 6)}`;
  localStorage.setItem('orrery.name', made);
  return made;
}

function BoardSwitcher({ slug, go }: { slug: string | null; go: (slug: string) => void }) {
  const { message } = AntApp.useApp();
  const [boards, setBoards] = useState<BoardSummary[]>([]);
  const [open, setOpen] = useState(false);
  const [form] = Form.useForm<{ name: string }>();

  const refresh = useCallback(async () => {
    try {
      setBoards(await listBoards());
    } catch {
      // the gateway is not up yet: the status panel says so
    }
  }, []);
  useEffect(() => {
    void refresh();
  }, [refresh, slug]);

  const create = async () => {
    const { name } = await form.validateFields();
    try {
      const board = await createBoard(name.trim());
      setOpen(false);
      form.resetFields();
      await refresh();
      go(board.slug);
    } catch (err) {
      void message.error(err instanceof Error ? err.message : String(err));
    }
  };

  return (
    <Space>
      <Select
        className="orrery-board-switcher"
        placeholder="Choose a board"
        style={{ minWidth: 220 }}
        value={slug}
        onChange={go}
        onOpenChange={(o: boolean) => o && void refresh()}
        options={boards.map((b) => ({ value: b.slug, label: b.name }))}
        notFoundContent="no boards yet"
      />
      <Button onClick={() => setOpen(true)}>New board</Button>
      <Modal
        title="New board"
        open={open}
        okText="Create"
        onOk={() => void create()}
        onCancel={() => setOpen(false)}
        destroyOnHidden
      >
        <Form form={form} layout="vertical" preserve={false} onFinish={() => void create()}>
          <Form.Item name="name" label="Name" rules={[{ required: true, whitespace: true, message: 'a name' }]}>
            <Input autoFocus />
          </Form.Item>
        </Form>
      </Modal>
    </Space>
  );
}

function Shell() {
  const [slug, go] = useHashBoard();
  const [name] = useState(viewerName);
  return (
    <Layout style={{ height: '100%' }}>
      <Layout.Header style={{ display: 'flex', alignItems: 'center', gap: 24 }}>
        <Typography.Title level={4} style={{ color: '#fff', margin: 0 }}>
          Orrery
        </Typography.Title>
        <BoardSwitcher slug={slug} go={go} />
      </Layout.Header>
      <Layout.Content style={{ display: 'flex', flexDirection: 'column', minHeight: 0 }}>
        <StatusPanel />
        <div style={{ flex: 1, minHeight: 0 }}>
          {slug ? (
            <BoardView key={slug} slug={slug} name={name} />
          ) : (
            <ReactFlow nodes={[]} fitView>
              <Background />
              <Controls />
            </ReactFlow>
          )}
        </div>
      </Layout.Content>
    </Layout>
  );
}

export default function App() {
  return (
    <AntApp style={{ height: '100%' }}>
      <Shell />
    </AntApp>
  );
}
