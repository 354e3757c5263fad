/**
 * What every route declares beside its schemas: the privilege it needs
 * (checked by auth-hook.ts, written into the OpenAPI file as
 * `x-drover-privilege` and in its description), or that it is public.
 */
import type { Privilege } from '../auth/privileges.js';

export interface RouteDoc {
  summary: string;
  description?: string;
  tags: string[];
}

export function needs(privilege: Privilege, doc: RouteDoc) {
  return {
    config: { privilege },
    schema: {
      ...doc,
      description: `${doc.description ? `${doc.description}\n\n` : ''}Needs the privilege **${privilege}**.`,
      'x-drover-privilege': privilege,
      security: [{ bearer: [] }, { session: [] }],
    },
  } as const;
}

/** A route any authenticated caller may use (what it shows depends on who asks). */
export function authenticated(doc: RouteDoc) {
  return {
    config: {},
    schema: { ...doc, description: `${doc.description ? `${doc.description}\n\n` : ''}Needs valid credentials; no privilege.`, security: [{ bearer: [] }, { session: [] }] },
  } as const;
}

export function open(doc: RouteDoc) {
  return { config: { public: true }, schema: { ...doc, security: [] } } as const;
}
