/**
 * A pass-through stream that hashes (sha256) and counts the bytes going
 * through it, for verified uploads and downloads: the bytes are checked on
 * the way, never read twice.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

export class HashingStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private count = 0;

  /**
   * With `expectedSize`, the stream fails as soon as more bytes come, or
   * when it ends with fewer: an upload with a declared Content-Length must
   * never wait for bytes that will not come.
   */
  constructor(
    private readonly onProgress?: (bytes: number) => void,
    private readonly expectedSize?: number,
  ) {
    super();
  }

  get bytes(): number {
    return this.count;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.count += chunk.length;
    if (this.expectedSize !== undefined && this.count > this.expectedSize) {
      done(new Error(`the source has more than the ${this.expectedSize} bytes expected`));
      return;
    }
    this.onProgress?.(this.count);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (this.expectedSize !== undefined && this.count !== this.expectedSize) {
      done(new Error(`the source ended after ${this.count} of the ${this.expectedSize} bytes expected`));
      return;
    }
    done();
  }

  /** The hex digest; call once, after the stream ended. */
  digest(): string {
    return this.hash.digest('hex');
  }
}
