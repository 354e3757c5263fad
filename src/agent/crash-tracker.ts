/** Unplanned exits per VM within a sliding window: the input to crash-loop protection. */
export class CrashTracker {
  private readonly exits = new Map<string, number[]>();

  constructor(
    private readonly windowMs: () => number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Exits of this VM still inside the window. */
  recent(uuid: string): number {
    return this.prune(uuid).length;
  }

  record(uuid: string): void {
    this.exits.set(uuid, [...this.prune(uuid), this.now()]);
  }

  forget(uuid: string): void {
    this.exits.delete(uuid);
  }

  private prune(uuid: string): number[] {
    const since = this.now() - this.windowMs();
    const kept = (this.exits.get(uuid) ?? []).filter((t) => t > since);
    this.exits.set(uuid, kept);
    return kept;
  }
}
