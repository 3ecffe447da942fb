import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The Litestar gateway serves the built files from web/dist; in development
// Vite proxies the gateway's routes to it (default port 8765).
const gateway = 'http://127.0.0.1:8765';

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      '/healthz': gateway,
      '/api': gateway,
      '/ws': { target: gateway, ws: true },
    },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    rolldownOptions: {
      output: {
        // Vendor chunks so no chunk trips the 500 kB warning and app changes
        // don't invalidate the cached libraries.
        codeSplitting: {
          groups: [
            { name: 'react', test: /node_modules[\\/](react|react-dom|scheduler)[\\/]/ },
            { name: 'xyflow', test: /node_modules[\\/](@xyflow|d3-[a-z]+|zustand|classcat)[\\/]/ },
            { name: 'vendor', test: /node_modules[\\/]/ },
          ],
        },
      },
    },
  },
});
