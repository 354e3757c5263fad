/**
 * The web dashboard in a real browser (docs/web.md): Debian's chromium
 * driven by playwright-core, against the API serving web/dist over real
 * etcd and a real agent with real qemu (TCG). Each page is saved as a
 * screenshot under test-output/web/ (docs/web.md shows them).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { chromium, type Browser, type Page } from 'playwright-core';
import { addUser, createLoginLink } from '../../src/auth/accounts.js';
import { startApi, type RunningApi } from '../../src/api/run-api.js';
import { AuthRepository } from '../../src/store/auth-repository.js';
import { apiEtcd, startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { GUEST, GUEST_DIR, REPO_ROOT, startCluster, type Cluster } from '../helpers/agent-harness.js';
import { quietLogger } from '../api/helpers.js';

const SHOTS = join(REPO_ROOT, 'test-output', 'web');
const CHROMIUM = '/usr/lib/chromium/chromium';
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

/** axe-core on the page as it is: no serious or critical violation. */
async function checkA11y(p: Page, what: string): Promise<void> {
  await p.addScriptTag({ path: AXE });
  const found = await p.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(ctx: Document, opts: object): Promise<{ violations: Array<{ id: string; impact?: string; help: string; nodes: Array<{ target: unknown }> }> }> } }).axe;
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}): ${v.help}: ${JSON.stringify(v.nodes.slice(0, 3).map((n) => n.target))}`);
  });
  assert.deepEqual(found, [], `axe-core on ${what}`);
}

describe('the web dashboard in chromium (real API, agent and qemu)', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let api: RunningApi;
  let browser: Browser;
  let page: Page;
  let demo: string;

  const shot = (name: string, p: Page = page) => p.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
  const row = (name: string, p: Page = page) => p.locator(`[data-vm="${name}"]`);

  before(async () => {
    await mkdir(SHOTS, { recursive: true });
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    await cluster.startAgent('hv1', { config: { scheduler: true } });
    api = await startApi({ ...(await apiEtcd(etcd, cluster.prefix)), prefix: cluster.prefix, listen: '127.0.0.1:0', bootDirs: [GUEST_DIR], logger: quietLogger });
    const auth = new AuthRepository(cluster.kv, cluster.keys);
    await addUser(auth, { name: 'admin', role: 'admin', password: 'correct-horse-battery', now: new Date() });
    await addUser(auth, { name: 'alice', role: 'user', now: new Date() });
    demo = await cluster.createVm({ name: 'demo', owner: 'admin', spec: { memory: 128, boot: { kernel: GUEST.kernel, initrd: GUEST.initrd, cmdline: 'console=tty0 console=ttyS0' } } });
    await cluster.createVm({ name: 'alice-web', owner: 'alice', status: 'STOP' });
    await cluster.waitForStatus(demo, 'RUNNING', 90_000);
    browser = await chromium.launch({ executablePath: CHROMIUM });
    // bypassCSP only so that axe-core can be injected; the policy itself is checked below.
    page = await (await browser.newContext({ viewport: { width: 1366, height: 768 }, bypassCSP: true })).newPage();
  });
  after(async () => {
    await browser?.close();
    await api?.stop();
    await cluster?.close();
    await etcd?.close();
  });

  it('signs in with a password and shows the machines, the demo VM RUNNING', async () => {
    const res = await page.goto(api.url);
    assert.match(res?.headers()['content-security-policy'] ?? '', /default-src 'self'; script-src 'self'/);
    await page.getByLabel('User').waitFor();
    await shot('login');
    await checkA11y(page, 'the login page');
    await page.getByLabel('User').fill('admin');
    await page.getByLabel('Password').fill('wrong password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor();
    await page.getByLabel('Password').fill('correct-horse-battery');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await row('demo').getByText('RUNNING').waitFor();
    await page.getByText('Live', { exact: true }).waitFor();
    // CPU and memory use of the running VMs in view, from the host's reports.
    await row('demo').getByText(/^\d+ MiB$/).last().waitFor({ timeout: 30_000 });
    await shot('machines');
    await checkA11y(page, 'the machines page');
    assert.equal(await row('alice-web').getByText('STOP').count(), 1, 'an admin sees every VM');
  });

  it('stops and starts a VM from the table and sees the status change without a reload', async () => {
    const before = await page.evaluate(() => performance.timeOrigin);
    await row('demo').getByRole('checkbox').check();
    await page.getByRole('toolbar').getByRole('button', { name: 'Stop', exact: true }).click();
    await page.getByRole('alertdialog').getByText('Stop demo?').waitFor();
    await page.getByRole('button', { name: 'Yes, stop' }).click();
    await row('demo').getByText('STOP', { exact: true }).waitFor({ timeout: 60_000 });
    await row('demo').getByRole('checkbox').check();
    await page.getByRole('toolbar').getByRole('button', { name: 'Start', exact: true }).click();
    await page.getByRole('button', { name: 'Yes, start' }).click();
    await row('demo').getByText('RUNNING').waitFor({ timeout: 90_000 });
    assert.equal(await page.evaluate(() => performance.timeOrigin), before, 'the page was never reloaded');
  });

  it('shows a VM written to etcd outside the browser, and finds it by field:value search', async () => {
    await cluster.createVm({ name: 'outside-1', owner: 'alice', status: 'STOP', host: '' });
    await row('outside-1').waitFor({ timeout: 10_000 });
    await page.getByLabel('Search machines').fill('owner:alice status:STOP');
    await row('outside-1').waitFor();
    assert.equal(await row('demo').count(), 0, 'the search hides what does not match');
    await shot('machines-search');
    await page.getByLabel('Search machines').fill('');
  });

  it('says when the event stream is away (the API restarting), then catches up with what changed meanwhile, without a reload', async () => {
    const port = new URL(api.url).port;
    const origin = await page.evaluate(() => performance.timeOrigin);
    await api.stop();
    await page.getByText('Reconnecting to the event stream…').waitFor({ timeout: 20_000 });
    await shot('stream-away');
    await cluster.createVm({ name: 'while-away', owner: 'admin', status: 'STOP', host: '' });
    api = await startApi({ ...(await apiEtcd(etcd, cluster.prefix)), prefix: cluster.prefix, listen: `127.0.0.1:${port}`, bootDirs: [GUEST_DIR], logger: quietLogger });
    await page.getByText('Live', { exact: true }).waitFor({ timeout: 30_000 });
    await row('while-away').waitFor({ timeout: 10_000 });
    assert.equal(await page.evaluate(() => performance.timeOrigin), origin, 'no reload');
  });

  it("opens the VNC console and sees the guest's screen", async () => {
    await row('demo').getByRole('link', { name: 'demo' }).click();
    await page.getByRole('heading', { name: 'demo' }).waitFor();
    await shot('machine');
    await checkA11y(page, "a machine's page");
    await page.getByRole('tab', { name: 'Screen (VNC)' }).click();
    await page.getByText('Connected', { exact: true }).waitFor({ timeout: 20_000 });
    // The screen is drawn: count the pixels of the canvas that are not the background.
    const lit = async () =>
      page.evaluate(() => {
        const c = document.querySelector<HTMLCanvasElement>('[data-testid="vnc-screen"] canvas');
        if (!c || c.width === 0) return 0;
        const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i]! + d[i + 1]! + d[i + 2]! > 60) n++;
        return n;
      });
    const deadline = Date.now() + 30_000;
    let seen = await lit();
    while (seen < 200 && Date.now() < deadline) {
      await page.waitForTimeout(500);
      seen = await lit();
    }
    assert.ok(seen >= 200, `the VNC canvas shows the guest's screen (${seen} lit pixels)`);
    await shot('vnc');
  });

  it("types into the serial console and sees the guest's answer", async () => {
    await page.getByRole('tab', { name: 'Serial console' }).click();
    await page.getByText('Connected', { exact: true }).waitFor({ timeout: 20_000 });
    // The guest may have just been restarted: its shell flushes what is typed before its prompt, as any shell does.
    await page.waitForFunction(() => [...document.querySelectorAll('.xterm-rows > div')].some((r) => r.textContent?.startsWith('/ #')), undefined, { timeout: 30_000 });
    await page.locator('[data-testid="serial-screen"]').click();
    await page.keyboard.type('echo browser-$((6*7))');
    await page.keyboard.press('Enter');
    // The answer on a line of its own: the shell ran the whole command (nothing typed was lost on the way).
    await page.waitForFunction(() => [...document.querySelectorAll('.xterm-rows > div')].some((r) => r.textContent?.trim() === 'browser-42'), undefined, { timeout: 20_000 });
    await shot('serial');
  });

  it("shows the machine's activity charts, growing from its host's reports, and its history: who changed what", async () => {
    await page.getByRole('tab', { name: 'Activity' }).click();
    const cpu = page.getByRole('img', { name: /^CPU \(vCPUs busy\): \d+ points/ });
    await cpu.waitFor();
    const pointsNow = async () => Number(/: (\d+) points/.exec((await cpu.getAttribute('aria-label')) ?? '')?.[1] ?? 0);
    const first = await pointsNow();
    const deadline = Date.now() + 45_000;
    while ((await pointsNow()) <= Math.max(first, 1) && Date.now() < deadline) await page.waitForTimeout(1000);
    assert.ok((await pointsNow()) > Math.max(first, 1), `the charts grew (from ${first} to ${await pointsNow()} points)`);
    assert.equal(await page.locator('figure.chart').count(), 4);
    await shot('activity');
    await checkA11y(page, 'the activity charts');
    await page.getByRole('tab', { name: 'History' }).click();
    // The stop asked from the table earlier: admin, status RUNNING → TO_STOP.
    await page.locator('ol.history li').filter({ hasText: 'admin' }).filter({ hasText: 'TO_STOP' }).first().waitFor();
    await shot('history');
    await checkA11y(page, 'the history');
  });

  it('creates a VM from the form: the schema\'s error first, then the VM, placed and RUNNING', async () => {
    await page.goto(`${api.url}/#/`);
    await page.getByRole('link', { name: 'Create machine' }).click();
    await page.getByRole('heading', { name: 'Create a machine' }).waitFor();
    await page.getByLabel('Name').fill('Bad_Name');
    await page.getByRole('alert').filter({ hasText: 'must match' }).waitFor();
    await page.getByLabel('a kernel').check();
    await page.getByLabel('Kernel', { exact: true }).fill(GUEST.kernel);
    await page.getByLabel('Initrd (optional)').fill(GUEST.initrd);
    await page.getByLabel('Memory (MiB)').fill('96');
    await page.getByRole('button', { name: 'Create' }).click();
    assert.equal(await page.getByRole('heading', { name: 'Bad_Name' }).count(), 0, 'nothing was created while the name was wrong');
    await shot('create-error');
    await checkA11y(page, 'the create form');
    await page.getByLabel('Name').fill('made-in-form');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('heading', { name: 'made-in-form' }).waitFor();
    await page.getByText('RUNNING', { exact: true }).waitFor({ timeout: 90_000 });
  });

  it('makes a token on the users page, shown once; hosts and events pages pass axe-core too', async () => {
    await page.getByRole('link', { name: 'Users' }).click();
    await page.getByRole('heading', { name: 'Users and tokens' }).waitFor();
    await page.getByLabel('For user').selectOption('alice');
    await page.getByLabel('Description').fill('from the dashboard');
    await page.getByRole('button', { name: 'Create token' }).click();
    const secret = await page.locator('code.secret').textContent();
    assert.match(secret ?? '', /^drt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    await page.getByRole('cell', { name: /from the dashboard/ }).waitFor();
    await shot('users');
    await checkA11y(page, 'the users page');
    await page.reload();
    await page.getByRole('heading', { name: 'Users and tokens' }).waitFor();
    assert.equal(await page.locator('code.secret').count(), 0, 'the token is shown once');
    for (const [link, heading, name] of [['Hosts', 'Hosts', 'hosts'], ['Images', 'Images', 'images'], ['Pools', 'Pools', 'pools'], ['Events', 'Events', 'events']] as const) {
      await page.getByRole('link', { name: link, exact: true }).click();
      await page.getByRole('heading', { name: heading, exact: true }).waitFor();
      if (name === 'hosts') {
        // An admin drains the host and undrains it again.
        await page.getByRole('button', { name: 'Drain', exact: true }).click();
        await page.getByText('DRAINED', { exact: true }).waitFor();
        await shot('hosts-drained');
        await page.getByRole('button', { name: 'Undrain', exact: true }).click();
        await page.getByRole('button', { name: 'Drain', exact: true }).waitFor();
      }
      await shot(name);
      await checkA11y(page, `the ${name} page`);
    }
  });

  it('follows the system into a dark theme, and after a lost session signs in again on the page it was on', async () => {
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.goto(`${api.url}/#/`);
    await row('demo').waitFor();
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(background, 'rgb(20, 23, 29)', 'the dark palette');
    await shot('machines-dark');
    await checkA11y(page, 'the machines page, dark');
    await page.emulateMedia({ colorScheme: 'light' });
    await page.context().clearCookies();
    await page.goto(`${api.url}/#/hosts`);
    await page.getByLabel('User').fill('admin');
    await page.getByLabel('Password').fill('correct-horse-battery');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Hosts', exact: true }).waitFor();
    assert.equal(new URL(page.url()).hash, '#/hosts');
  });

  it("a user signed in with the one-time link sees only its own VMs and no power over others'", async () => {
    const link = await createLoginLink(new AuthRepository(cluster.kv, cluster.keys), 'alice', new Date());
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const phone = await context.newPage();
    await phone.goto(`${api.url}/#login=${link}`);
    await row('alice-web', phone).waitFor();
    assert.equal(await row('demo', phone).count(), 0, "the admin's VM is not shown");
    assert.equal(await phone.getByRole('link', { name: 'Users' }).count(), 0, 'no admin page is offered');
    assert.equal(await phone.getByRole('link', { name: 'Create machine' }).count(), 1, 'a user may create machines');
    assert.equal(new URL(phone.url()).hash.includes('drl_'), false, 'the link left the address bar');
    await shot('machines-phone', phone);
    // The link worked once.
    const again = await context.newPage();
    await context.clearCookies();
    await again.goto(`${api.url}/#login=${link}`);
    await again.getByRole('alert').filter({ hasText: 'not valid' }).waitFor();
    await context.close();
  });
});
