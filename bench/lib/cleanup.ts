/**
 * Cleanup steps for a benchmark: run last-registered first, each at most
 * once, also when the run is interrupted (onSignals wires SIGINT/SIGTERM).
 */
export class Cleanup {
  private readonly steps: Array<{ what: string; fn: () => Promise<unknown> }> = [];
  private running: Promise<void> | null = null;

  add(what: string, fn: () => Promise<unknown>): void {
    this.steps.push({ what, fn });
  }

  /** Runs the steps on SIGINT or SIGTERM, then exits 130. */
  onSignals(): this {
    const onSignal = (sig: NodeJS.Signals): void => {
      console.error(`\n${sig}: cleaning up`);
      void this.run().finally(() => process.exit(130));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    return this;
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      for (let step = this.steps.pop(); step; step = this.steps.pop()) {
        try {
          await step.fn();
        } catch (err) {
          console.error(`cleanup: ${step.what} failed: ${(err as Error).message}`);
        }
      }
    })();
    return this.running;
  }
}
