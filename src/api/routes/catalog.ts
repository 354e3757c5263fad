/**
 * /api/v1/images (VM.Audit, so a user can pick an image) and
 * /api/v1/pools (Sys.Audit), read-only: images are imported with `drover
 * image import` on a machine that holds the bytes, pools made and deleted
 * with `drover pool` (docs/pools.md).
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { DroverError } from '../../lib/errors.js';
import { ImageRepository, type StoredImage } from '../../store/image-repository.js';
import { PoolRepository, type StoredPool } from '../../store/pool-repository.js';
import { rawObject, type JsonObject } from '../../store/vm-repository.js';
import type { ApiDeps } from '../context.js';
import { needs } from '../route-options.js';
import { documents, errorSchema } from '../schemas.js';

const items = z.object({ items: z.array(z.looseObject({})) });

function imageView(i: StoredImage): JsonObject {
  return { ...(rawObject(i.raw) ?? {}), uuid: i.uuid, ...(i.parsed.ok ? {} : { invalid: i.parsed.error }) };
}

function poolView(p: StoredPool): JsonObject {
  return { ...(rawObject(p.raw) ?? {}), name: p.name, ...(p.parsed.ok ? {} : { invalid: p.parsed.error }) };
}

export function registerCatalogRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const images = new ImageRepository(deps.store.kv, deps.store.keys);
  const pools = new PoolRepository(deps.store.kv, deps.store.keys);

  const imagesDoc = needs('VM.Audit', { summary: 'List images (docs/storage.md)', tags: ['images'] });
  r.get('/api/v1/images', {
    ...imagesDoc,
    schema: { ...imagesDoc.schema, response: { 200: documents(items) } },
    handler: async () => ({ items: (await images.list()).map(imageView).sort((a, b) => `${String(a.name)}:${String(a.version)}`.localeCompare(`${String(b.name)}:${String(b.version)}`)) }),
  });
  const imageDoc = needs('VM.Audit', { summary: 'Get one image by uuid, name:version or name (the newest active version)', tags: ['images'] });
  r.get('/api/v1/images/:ref', {
    ...imageDoc,
    schema: { ...imageDoc.schema, params: z.object({ ref: z.string().max(200) }), response: { 200: documents(z.looseObject({})), 404: documents(errorSchema) } },
    handler: async (req) => {
      const direct = await images.get(req.params.ref).catch(() => null);
      if (direct) return imageView(direct);
      const found = await images.resolve(req.params.ref);
      if (!found) throw new DroverError('NOT_FOUND', `There is no image ${req.params.ref}.`);
      return { ...found };
    },
  });

  const poolsDoc = needs('Sys.Audit', { summary: 'List pools (docs/pools.md)', tags: ['pools'] });
  r.get('/api/v1/pools', {
    ...poolsDoc,
    schema: { ...poolsDoc.schema, response: { 200: documents(items) } },
    handler: async () => ({ items: (await pools.list()).map(poolView) }),
  });
}
