/** What `drover user|token` do, once commander has parsed them (commands/auth.ts). */
import { addUser, checkRole, createToken, deleteUser, revokeToken, setPassword, tokenView, userView } from '../../auth/accounts.js';
import { parseDuration } from '../../lib/duration.js';
import { DroverError } from '../../lib/errors.js';
import type { CliContext, CliIo } from '../context.js';
import { resolveGlobalOptions, type GlobalFlags } from '../global-options.js';
import { printJson, printLine } from '../output/print.js';
import { formatTable } from '../output/table.js';
import { withStore } from '../store-session.js';

export interface UserAddFlags extends GlobalFlags {
  role: string;
  passwordStdin?: boolean;
}

export interface TokenCreateFlags extends GlobalFlags {
  user: string;
  role?: string;
  expires?: string;
  description?: string;
}

/** The first line of stdin, without its line end. */
async function readPassword(io: CliIo): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of io.stdin()) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  const line = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
  if (line === '') throw new DroverError('USAGE', 'No password on stdin: pipe it in, e.g. printf "%s\\n" "$PW" | drover user add ...');
  return line;
}

export async function userAddAction(ctx: CliContext, name: string, flags: UserAddFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const password = flags.passwordStdin ? await readPassword(ctx.io) : undefined;
  const user = await withStore(opts, (s) => addUser(s.auth, { name, role: checkRole(flags.role), password, createdBy: 'drover user add', now: new Date() }));
  if (opts.json) return printJson(ctx.io, user);
  printLine(ctx.io, `Added user ${user.name} (${user.role})${user.has_password ? '' : '; it has no password: give it a token with `drover token create --user ' + user.name + '`'}.`);
}

export async function userListAction(ctx: CliContext, flags: GlobalFlags & { header: boolean }): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const users = (await withStore(opts, (s) => s.auth.listUsers())).map(userView);
  if (opts.json) return printJson(ctx.io, users);
  const rows = users.map((u) => [u.name, u.role, u.has_password ? 'yes' : 'no', u.created_at]);
  ctx.io.stdout.write(formatTable(['NAME', 'ROLE', 'PASSWORD', 'CREATED'], rows, { header: flags.header }));
}

export async function userDeleteAction(ctx: CliContext, name: string, flags: GlobalFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  await withStore(opts, (s) => deleteUser(s.auth, name));
  if (opts.json) return printJson(ctx.io, { name, deleted: true });
  printLine(ctx.io, `Deleted user ${name} with its tokens and sessions.`);
}

export async function userPasswdAction(ctx: CliContext, name: string, flags: GlobalFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const password = await readPassword(ctx.io);
  await withStore(opts, (s) => setPassword(s.auth, name, password));
  if (opts.json) return printJson(ctx.io, { name, password_set: true });
  printLine(ctx.io, `Set the password of ${name}.`);
}

export async function tokenCreateAction(ctx: CliContext, flags: TokenCreateFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const role = flags.role !== undefined ? checkRole(flags.role) : undefined;
  let expiresIn: number | undefined;
  if (flags.expires !== undefined) {
    const seconds = parseDuration(flags.expires);
    if (seconds === null || seconds <= 0) throw new DroverError('USAGE', `Option --expires ${JSON.stringify(flags.expires)} must be a duration such as 90s, 10m, 12h or 30d.`);
    expiresIn = seconds;
  }
  const created = await withStore(opts, (s) => createToken(s.auth, { user: flags.user, role, expiresIn, description: flags.description, now: new Date() }));
  if (opts.json) return printJson(ctx.io, { id: created.id, token: created.token, user: created.user, role: created.role, ...(created.expires_at ? { expires_at: created.expires_at } : {}) });
  printLine(ctx.io, created.token);
  ctx.io.stderr.write(`Token ${created.id} for ${created.user} (${created.role}${created.expires_at ? `, expires ${created.expires_at}` : ''}). It is shown only now: keep it safe.\n`);
}

export async function tokenListAction(ctx: CliContext, flags: GlobalFlags & { user?: string; header: boolean }): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const now = new Date();
  const tokens = (await withStore(opts, (s) => s.auth.listTokens(flags.user))).map((t) => tokenView(t, now));
  if (opts.json) return printJson(ctx.io, tokens);
  const rows = tokens.map((t) => [t.id, t.user, t.role, t.created_at, t.expires_at ? `${t.expires_at}${t.expired ? ' (expired)' : ''}` : 'never', t.description ?? '']);
  ctx.io.stdout.write(formatTable(['ID', 'USER', 'ROLE', 'CREATED', 'EXPIRES', 'DESCRIPTION'], rows, { header: flags.header }));
}

export async function tokenRevokeAction(ctx: CliContext, id: string, flags: GlobalFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  await withStore(opts, (s) => revokeToken(s.auth, id.trim()));
  if (opts.json) return printJson(ctx.io, { id, revoked: true });
  printLine(ctx.io, `Revoked token ${id} and the sessions opened with it.`);
}
