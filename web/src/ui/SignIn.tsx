import { useEffect, useState } from 'react';
import { Button, Form, Input, Typography } from 'antd';
import { ApiError, auth } from '../transport/auth';

interface Fields {
  email: string;
  password: string;
  name?: string;
}

/** Sign in with email and password, or (on a gateway with no users yet) create the first owner.
 * Signing in stores the token pair; the app hears of it and asks /api/me again. */
export function SignIn() {
  const [setup, setSetup] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  // A gateway with no users yet opens on the setup form (GET /api/auth/status is public).
  useEffect(() => {
    let live = true;
    fetch('/api/auth/status')
      .then((res) => (res.ok ? (res.json() as Promise<{ setup_needed?: boolean }>) : null))
      .then((status) => {
        if (live && status?.setup_needed) setSetup(true);
      })
      .catch(() => undefined); // unreachable: the sign-in form stays, its errors will say so
    return () => {
      live = false;
    };
  }, []);

  const submit = async ({ email, password, name }: Fields) => {
    setBusy(true);
    setError(null);
    try {
      if (setup) await auth().setUp(email.trim(), password, (name ?? '').trim());
      else await auth().signIn(email.trim(), password);
    } catch (err) {
      if (err instanceof ApiError && err.code === 'auth.setup_done') setSetup(false);
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  const toggle = () => {
    setSetup(!setup);
    setError(null);
  };

  return (
    <div className="orrery-sign-in" style={{ width: 360, margin: '10vh auto' }}>
      <Typography.Title level={4}>{setup ? 'Create the first owner' : 'Sign in to Orrery'}</Typography.Title>
      {setup ? (
        <Typography.Paragraph type="secondary">
          This gateway has no users yet: the first one is its owner.
        </Typography.Paragraph>
      ) : null}
      <Form<Fields> layout="vertical" onFinish={(v) => void submit(v)} disabled={busy}>
        {setup ? (
          <Form.Item name="name" label="Name" rules={[{ required: true, whitespace: true, message: 'a name' }]}>
            <Input autoComplete="name" />
          </Form.Item>
        ) : null}
        <Form.Item name="email" label="Email" rules={[{ required: true, whitespace: true, message: 'an email' }]}>
          <Input type="email" autoComplete="username" autoFocus />
        </Form.Item>
        <Form.Item
          name="password"
          label="Password"
          rules={[
            { required: true, message: 'a password' },
            ...(setup ? [{ min: 8, message: 'at least 8 characters' }] : []),
          ]}
        >
          <Input.Password autoComplete={setup ? 'new-password' : 'current-password'} />
        </Form.Item>
        {error ? (
          <Typography.Paragraph type="danger" role="alert">
            {error}
          </Typography.Paragraph>
        ) : null}
        <Button type="primary" htmlType="submit" block loading={busy}>
          {setup ? 'Create owner and sign in' : 'Sign in'}
        </Button>
      </Form>
      <Typography.Link onClick={toggle} style={{ display: 'block', marginTop: 12 }}>
        {setup ? 'I have an account: sign in' : 'No users yet? Create the first owner'}
      </Typography.Link>
    </div>
  );
}
