/** The API's roles (docs/security.md); no zod here, so `drover --help` stays light. */
export const ROLES = ['admin', 'operator', 'user', 'auditor'] as const;
export type Role = (typeof ROLES)[number];
