/**
 * Reports what happens: to the agent's log, to `P/log/` and, for the events
 * that need a human, by e-mail. Reporting never throws: a failure to write
 * an event or send a mail is logged and the agent goes on.
 *
 * An event that reports a change of a record is `stage`d instead: its
 * `P/log/` write goes into the record's own transaction (VmRepository's
 * `also`), so the change and its event are committed together or not at
 * all, and the log line and e-mail follow once it is committed.
 */
import type { DroverEvent, EventCode, EventLevel } from '../contract/event.js';
import type { Logger } from '../lib/logger.js';
import { errorMessage } from '../lib/errors.js';
import type { EventLog } from '../store/event-log.js';
import type { KvOp } from '../store/kv-store.js';
import type { Notifier } from './notifier.js';

export interface Report {
  level: EventLevel;
  event: EventCode;
  message: string;
  vm?: string;
  email?: boolean;
}

/** An event riding in another write's transaction. */
export interface StagedReport {
  /** The event's write, for the transaction. */
  op: KvOp;
  /** The log line and e-mail, once the transaction committed. */
  announce(): Promise<void>;
}

export class EventReporter {
  constructor(
    private readonly host: string,
    private readonly log: EventLog,
    private readonly notifier: Notifier,
    private readonly logger: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async report(r: Report): Promise<void> {
    const event = this.eventOf(r);
    await Promise.all([
      this.log.append(event).catch((err: unknown) => this.logger.warn({ err: errorMessage(err) }, 'could not write the event to etcd')),
      this.announce(r, event),
    ]);
  }

  stage(r: Report): StagedReport {
    const event = this.eventOf(r);
    return { op: this.log.appendOp(event), announce: () => this.announce(r, event) };
  }

  private eventOf(r: Report): DroverEvent {
    const event: DroverEvent = { ts: this.now().toISOString(), host: this.host, level: r.level, event: r.event, message: r.message };
    if (r.vm !== undefined) event.vm = r.vm;
    return event;
  }

  private async announce(r: Report, event: DroverEvent): Promise<void> {
    this.logger[r.level]({ event: r.event, vm: r.vm }, r.message);
    if (!r.email || !this.notifier.enabled) return;
    const subject = `[drover] ${this.host}: ${r.event}${r.vm ? ` ${r.vm}` : ''}`;
    await this.notifier
      .notify(subject, `${event.ts} ${r.level.toUpperCase()} ${r.event}\n\n${r.message}\n\nhost: ${this.host}\n${r.vm ? `vm: ${r.vm}\n` : ''}`)
      .catch((err: unknown) => this.logger.warn({ err: errorMessage(err) }, 'could not send the notification e-mail'));
  }
}
