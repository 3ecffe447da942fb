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
import { auth, canEdit, fetchMe, type Me } from './transport/auth';
import { createBoard, listBoards, type BoardSummary } from './transport/canvas';
import { BoardView } from './ui/BoardView';
import { SignIn } from './ui/SignIn';

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

function BoardSwitcher({
  slug,
  go,
  editable,
}: {
  slug: string | null;
  go: (slug: string) => void;
  editable: boolean;
}) {
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
      {editable ? <Button onClick={() => setOpen(true)}>New board</Button> : null}
      <Modal
        title="New board"
        open={open && editable}
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

type Who =
  | { state: 'checking' }
  | { state: 'sign-in' }
  /** `me` is null while the gateway does not answer /api/me (asked again until it does). */
  | { state: 'in'; me: Me | null };

/** Who we are, from /api/me: asked at start and whenever a token pair appears or goes. */
function useWho(): Who {
  const [who, setWho] = useState<Who>({ state: 'checking' });
  useEffect(() => {
    let asked = 0;
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const check = async () => {
      const mine = ++asked;
      clearTimeout(timer);
      let me: Me | null | undefined;
      try {
        me = await fetchMe();
      } catch {
        me = undefined; // the gateway is not up: the status panel says so
      }
      if (!live || mine !== asked) return; // a later question is on its way
      if (me === null) setWho({ state: 'sign-in' });
      else setWho({ state: 'in', me: me ?? null });
      if (me === undefined) timer = setTimeout(() => void check(), POLL_MS);
    };
    void check();
    const unsubscribe = auth().subscribe(() => void check());
    return () => {
      live = false;
      clearTimeout(timer);
      unsubscribe();
    };
  }, []);
  return who;
}

function UserMenu({ me }: { me: Me | null }) {
  if (!me) return null;
  if (me.via === 'anonymous') {
    return <Typography.Text style={{ color: 'rgba(255, 255, 255, 0.65)' }}>local (anonymous)</Typography.Text>;
  }
  return (
    <Space>
      <Typography.Text className="orrery-user" style={{ color: '#fff' }}>
        {me.name} · {me.role}
      </Typography.Text>
      <Button size="small" onClick={() => void auth().signOut()}>
        Sign out
      </Button>
    </Space>
  );
}

function Header({ children }: { children?: React.ReactNode }) {
  return (
    <Layout.Header style={{ display: 'flex', alignItems: 'center', gap: 24 }}>
      <Typography.Title level={4} style={{ color: '#fff', margin: 0 }}>
        Orrery
      </Typography.Title>
      {children}
    </Layout.Header>
  );
}

function Shell({ me }: { me: Me | null }) {
  const [slug, go] = useHashBoard();
  const [guest] = useState(viewerName);
  const name = me && me.via !== 'anonymous' ? me.name : guest;
  const editable = canEdit(me?.role);
  return (
    <Layout style={{ height: '100%' }}>
      <Header>
        <BoardSwitcher slug={slug} go={go} editable={editable} />
        <div style={{ marginLeft: 'auto' }}>
          <UserMenu me={me} />
        </div>
      </Header>
      <Layout.Content style={{ display: 'flex', flexDirection: 'column', minHeight: 0 }}>
        <StatusPanel />
        <div style={{ flex: 1, minHeight: 0 }}>
          {slug ? (
            <BoardView key={slug} slug={slug} name={name} editable={editable} />
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

function Gate() {
  const who = useWho();
  if (who.state === 'in') return <Shell me={who.me} />;
  return (
    <Layout style={{ height: '100%' }}>
      <Header />
      <Layout.Content>
        <StatusPanel />
        {who.state === 'sign-in' ? <SignIn /> : null}
      </Layout.Content>
    </Layout>
  );
}

export default function App() {
  return (
    <AntApp style={{ height: '100%' }}>
      <Gate />
    </AntApp>
  );
}
