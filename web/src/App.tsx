import { useState } from 'react';
import { ChatApp } from './components/ChatApp';
import { SignIn } from './components/SignIn';
import { loadSession, saveSession, type Session } from './session';

export function App() {
  const [session, setSession] = useState<Session | null>(loadSession);
  const [notice, setNotice] = useState<string | null>(null);

  if (!session) {
    return (
      <SignIn
        notice={notice}
        onSignedIn={(s) => {
          saveSession(s);
          setNotice(null);
          setSession(s);
        }}
      />
    );
  }
  return (
    <ChatApp
      key={session.token}
      session={session}
      onSignOut={(reason) => {
        saveSession(null);
        setNotice(reason ?? null);
        setSession(null);
      }}
    />
  );
}
