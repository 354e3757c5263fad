/**
 * A minimal RFB (VNC) client for the web benchmark: the 3.8 handshake with
 * security type None, shared, raw encoding, then full (non-incremental)
 * framebuffer update requests one after another, counting the bytes that
 * arrive: the throughput of a VNC session through whatever carries the
 * bytes (a unix socket, or the API's websocket relay). RFC 6143.
 */
import { performance } from 'node:perf_hooks';

/** A byte pipe: send bytes, and `onData` for what arrives. */
export interface BytePipe {
  send(b: Buffer): void;
  onData(fn: (b: Buffer) => void): void;
  close(): void;
}

class Reader {
  private buf: Buffer = Buffer.alloc(0);
  private want: { n: number; resolve: (b: Buffer) => void } | null = null;
  total = 0;

  push(b: Buffer): void {
    this.total += b.length;
    this.buf = this.buf.length === 0 ? b : Buffer.concat([this.buf, b]);
    this.drain();
  }

  /** The next `n` bytes. */
  read(n: number): Promise<Buffer> {
    return new Promise((resolve) => {
      this.want = { n, resolve };
      this.drain();
    });
  }

  /** Drops the next `n` bytes without keeping them (pixel data). */
  async skip(n: number): Promise<void> {
    while (n > 0) {
      const take = Math.min(n, 1 << 20);
      await this.read(take);
      n -= take;
    }
  }

  private drain(): void {
    if (!this.want || this.buf.length < this.want.n) return;
    const { n, resolve } = this.want;
    this.want = null;
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    resolve(out);
  }
}

/** Runs `updates` full-screen raw updates; MiB/s of everything received, and the screen size. */
export async function rfbThroughput(pipe: BytePipe, updates: number): Promise<{ mibPerSecond: number; width: number; height: number }> {
  const r = new Reader();
  pipe.onData((b) => r.push(b));
  const version = (await r.read(12)).toString('latin1');
  if (!version.startsWith('RFB 003.')) throw new Error(`not an RFB server: ${JSON.stringify(version)}`);
  pipe.send(Buffer.from('RFB 003.008\n'));
  const nTypes = (await r.read(1))[0] as number;
  const types = [...(await r.read(nTypes))];
  if (!types.includes(1)) throw new Error(`the server offers no security type None (${types.join(',')})`);
  pipe.send(Buffer.from([1]));
  if ((await r.read(4)).readUInt32BE(0) !== 0) throw new Error('the security handshake failed');
  pipe.send(Buffer.from([1])); // shared
  const init = await r.read(24);
  const width = init.readUInt16BE(0);
  const height = init.readUInt16BE(2);
  const bpp = init[4] as number;
  await r.read(init.readUInt32BE(20)); // the desktop name
  const setEncodings = Buffer.alloc(8);
  setEncodings.writeUInt8(2, 0);
  setEncodings.writeUInt16BE(1, 2);
  setEncodings.writeInt32BE(0, 4); // raw
  pipe.send(setEncodings);
  const request = Buffer.alloc(10);
  request.writeUInt8(3, 0);
  request.writeUInt8(0, 1); // not incremental: the whole screen each time
  request.writeUInt16BE(width, 6);
  request.writeUInt16BE(height, 8);
  const start = r.total;
  const t0 = performance.now();
  for (let i = 0; i < updates; i++) {
    pipe.send(request);
    // Skip any message that is not a framebuffer update (bell, cut text, colour map).
    for (;;) {
      const type = (await r.read(1))[0];
      if (type === 0) break;
      if (type === 2) continue; // bell
      if (type === 3) {
        const h = await r.read(7);
        await r.skip(h.readUInt32BE(3));
        continue;
      }
      throw new Error(`unexpected RFB message ${String(type)}`);
    }
    const head = await r.read(3);
    const rects = head.readUInt16BE(1);
    for (let k = 0; k < rects; k++) {
      const rect = await r.read(12);
      const w = rect.readUInt16BE(4);
      const h = rect.readUInt16BE(6);
      const enc = rect.readInt32BE(8);
      if (enc === 0) await r.skip(w * h * (bpp / 8));
      else if (enc !== -223) throw new Error(`unexpected encoding ${enc}`); // -223: DesktopSize, no data
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  pipe.close();
  return { mibPerSecond: (r.total - start) / 1048576 / seconds, width, height };
}
