import { App as AntApp, Button, Modal, Space, Typography } from 'antd';
import { pinnedTo, type BoardState } from '../domain/board';
import { deleteZone } from '../transport/canvas';

/** Deleting a zone (right-click on it): with pinned cards, the choice the server asks for —
 * unpin them (they stay where they are) or remove them from the board. */
export function ZoneDelete({
  slug,
  board,
  zoneId,
  onClose,
}: {
  slug: string;
  board: BoardState | null;
  zoneId: string | null;
  onClose: () => void;
}) {
  const { message } = AntApp.useApp();
  const zone = zoneId && board ? board.zones[zoneId] : undefined;
  const pinned = board && zoneId ? pinnedTo(board, zoneId) : [];
  const run = async (cards: 'refuse' | 'unpin' | 'remove') => {
    if (!zone) return;
    try {
      await deleteZone(slug, zone.id, cards);
      onClose();
    } catch (err) {
      void message.error(String(err instanceof Error ? err.message : err));
    }
  };
  return (
    <Modal
      title={`Delete zone ${zone?.label ?? ''}`}
      open={zone !== undefined}
      onCancel={onClose}
      footer={null}
      destroyOnHidden
    >
      {pinned.length > 0 ? (
        <Space direction="vertical" style={{ width: '100%' }}>
          <Typography.Text>
            {pinned.length} card(s) are pinned to this zone. What happens to them?
          </Typography.Text>
          <Space>
            <Button onClick={() => void run('unpin')}>Unpin cards (keep them)</Button>
            <Button danger onClick={() => void run('remove')}>
              Remove cards from the board
            </Button>
          </Space>
        </Space>
      ) : (
        <Space>
          <Button danger onClick={() => void run('refuse')}>
            Delete
          </Button>
          <Button onClick={onClose}>Cancel</Button>
        </Space>
      )}
    </Modal>
  );
}
