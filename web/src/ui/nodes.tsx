import type { NodeProps, NodeTypes } from '@xyflow/react';
import type { CardNode, NoteNode, ZoneNode } from '../domain/flow';

function ZoneView({ data }: NodeProps<ZoneNode>) {
  const { zone } = data;
  return (
    <div
      className="orrery-zone"
      data-testid={`zone-${zone.id}`}
      style={{
        width: '100%',
        height: '100%',
        boxSizing: 'border-box',
        border: `2px solid ${zone.border_color}`,
        background: zone.background_color,
        borderRadius: 8,
      }}
    >
      <div style={{ padding: '4px 8px', fontWeight: 600, color: zone.border_color }}>
        {zone.trigger ? (
          <span title={`trigger: ${zone.trigger.behavior ?? 'show_picker'}`} style={{ marginRight: 4 }}>
            ⚡
          </span>
        ) : null}
        <span className="orrery-zone-label">{zone.label}</span>
        {zone.locked ? <span style={{ marginLeft: 4 }}>🔒</span> : null}
      </div>
    </div>
  );
}

function CardView({ data }: NodeProps<CardNode>) {
  return (
    <div
      className="orrery-card"
      data-testid={`card-${data.worktreeId}`}
      style={{
        width: '100%',
        height: '100%',
        boxSizing: 'border-box',
        background: '#fff',
        border: '1px solid #d9d9d9',
        borderRadius: 6,
        boxShadow: '0 1px 4px rgba(0,0,0,0.15)',
        padding: '8px 12px',
        cursor: 'grab',
        opacity: data.draggedBy ? 0.7 : 1,
      }}
    >
      <div style={{ fontWeight: 600 }} className="orrery-card-name">
        {data.name}
      </div>
      <div style={{ fontSize: 11, color: '#888' }}>{data.worktreeId.slice(0, 8)}</div>
      {data.draggedBy ? <div style={{ fontSize: 11 }}>moved by {data.draggedBy}</div> : null}
    </div>
  );
}

function NoteView({ data }: NodeProps<NoteNode>) {
  const { note } = data;
  const sticky = note.kind === 'markdown';
  return (
    <div
      className="orrery-note"
      style={{
        width: '100%',
        minHeight: '100%',
        boxSizing: 'border-box',
        whiteSpace: 'pre-wrap',
        fontSize: note.font_size,
        color: note.color ?? undefined,
        background: note.background_color ?? (sticky ? '#fff8b3' : 'transparent'),
        padding: sticky ? 8 : 0,
        borderRadius: sticky ? 4 : 0,
        boxShadow: sticky ? '0 1px 3px rgba(0,0,0,0.2)' : undefined,
      }}
    >
      {note.content}
    </div>
  );
}

export const nodeTypes: NodeTypes = { zone: ZoneView, card: CardView, note: NoteView };
