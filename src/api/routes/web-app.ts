/**
 * `/`: the web dashboard (docs/web.md), the files `vite build web` wrote to
 * web/dist, served by this process: nothing comes from elsewhere at run
 * time. The Content-Security-Policy allows only this origin (inline
 * styles for the terminal's and VNC's own elements; no inline script), and
 * no page of it may be framed. Hashed assets are cached for a year; the
 * page itself is revalidated.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';

export const WEB_ROOT = fileURLToPath(new URL('../../../../web/dist/', import.meta.url));

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

export async function registerWebApp(app: FastifyInstance, root = WEB_ROOT): Promise<void> {
  app.addHook('onSend', async (req, reply) => {
    if (!req.url.startsWith('/api/')) void reply.header('Content-Security-Policy', CSP).header('X-Content-Type-Options', 'nosniff').header('X-Frame-Options', 'DENY');
  });
  if (!existsSync(`${root}index.html`)) {
    app.get('/', { schema: { hide: true }, config: { public: true } }, async (_req, reply) =>
      reply.code(503).type('text/plain; charset=utf-8').send('The web dashboard is not built: run `make build` (it runs `vite build web`). The API is at /api/v1/ (docs/api.md).\n'),
    );
    return;
  }
  // In its own context, whose routes (one per built file) are marked public: the page asks for credentials itself.
  await app.register(async (web) => {
    web.addHook('onRoute', (route) => {
      route.config = { ...(route.config as object | undefined), public: true } as typeof route.config;
    });
    await web.register(fastifyStatic, {
    root,
    prefix: '/',
    index: ['index.html'],
    wildcard: false,
    // Only the built files: no directory listings, no dotfiles.
    list: false,
    dotfiles: 'deny',
    setHeaders: (reply, path) => {
      void reply.header('Cache-Control', path.includes('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache');
    },
    });
  });
}
