// The dashboard's build (docs/web.md): `make build` runs `vite build web`;
// the API serves web/dist at `/`. Nothing is fetched from a CDN.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  root: import.meta.dirname,
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // noVNC uses top-level await.
    target: 'es2022',
    chunkSizeWarningLimit: 600,
  },
});
