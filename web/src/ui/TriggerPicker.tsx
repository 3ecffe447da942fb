import { useEffect, useState } from 'react';
import { App as AntApp, Button, Input, Modal, Typography } from 'antd';
import type { TriggerState } from '../domain/board';
import { chooseTrigger, dismissTrigger } from '../transport/canvas';

/** The show_picker offer: the rendered prompt, editable; closes when the trigger ends. */
export function TriggerPicker({ slug, trigger }: { slug: string; trigger: TriggerState | null }) {
  const { message } = AntApp.useApp();
  const [prompt, setPrompt] = useState('');
  const [busy, setBusy] = useState(false);
  const id = trigger?.id ?? null;
  useEffect(() => {
    setPrompt(trigger?.prompt ?? '');
    setBusy(false);
  }, [id]); // a new offer, a new prompt (not on every render of the same one)

  const act = async (what: () => Promise<unknown>) => {
    setBusy(true);
    try {
      await what();
    } catch (err) {
      void message.error(err instanceof Error ? err.message : String(err));
      setBusy(false);
    }
  };

  return (
    <Modal
      title="Zone trigger"
      open={trigger !== null}
      closable={false}
      maskClosable={false}
      footer={
        trigger
          ? [
              <Button key="dismiss" disabled={busy} onClick={() => void act(() => dismissTrigger(slug, trigger.id))}>
                Dismiss
              </Button>,
              <Button
                key="new"
                type="primary"
                loading={busy}
                disabled={!prompt.trim()}
                onClick={() => void act(() => chooseTrigger(slug, trigger.id, prompt))}
              >
                New session
              </Button>,
            ]
          : null
      }
    >
      <Typography.Paragraph type="secondary">
        A card entered a zone with a trigger. Start a new session with this prompt?
      </Typography.Paragraph>
      <Input.TextArea rows={6} value={prompt} onChange={(e) => setPrompt(e.target.value)} />
    </Modal>
  );
}
