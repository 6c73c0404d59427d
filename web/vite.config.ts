import react from '@vitejs/plugin-react';
import { defineConfig } from 'vitest/config';

// Served by the edge nodes at `/` (from web/dist); `npm run dev` proxies the API to a local edge.
const edge = process.env.CHAT_EDGE ?? 'http://127.0.0.1:8080';

export default defineConfig({
  base: '/',
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: true },
  server: {
    proxy: {
      '/v1/ws': { target: edge, ws: true },
      '/v1': { target: edge },
      '/healthz': { target: edge },
    },
  },
  test: {
    environment: 'node',
    include: ['test/**/*.test.ts'],
  },
});
