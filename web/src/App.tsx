import { useEffect, useState } from 'react';
import { Layout, Space, Tag, Tooltip, Typography } from 'antd';
import { Background, Controls, MiniMap, ReactFlow, type Node } from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import { healthRows, unreachableRows, type HealthRow } from './domain/health';
import { fetchHealth } from './transport/health';

const POLL_MS = 2000;

const nodes: Node[] = [
  {
    id: 'placeholder',
    position: { x: 0, y: 0 },
    data: { label: 'Boards arrive with the canvas issue' },
  },
];

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

export default function App() {
  return (
    <Layout style={{ height: '100%' }}>
      <Layout.Header style={{ display: 'flex', alignItems: 'center' }}>
        <Typography.Title level={4} style={{ color: '#fff', margin: 0 }}>
          Orrery
        </Typography.Title>
      </Layout.Header>
      <Layout.Content style={{ display: 'flex', flexDirection: 'column', minHeight: 0 }}>
        <StatusPanel />
        <div style={{ flex: 1, minHeight: 0 }}>
          <ReactFlow defaultNodes={nodes} fitView>
            <Background />
            <Controls />
            <MiniMap />
          </ReactFlow>
        </div>
      </Layout.Content>
    </Layout>
  );
}
