/**
 * E-mail notifications (seed 004: "emit an email to sre@"), through
 * nodemailer. Turned on by DROVER_NOTIFY_EMAIL and DROVER_SMTP_URL (or the
 * config keys); without both, the notifier drops messages.
 */
import nodemailer from 'nodemailer';

export interface Notifier {
  readonly enabled: boolean;
  notify(subject: string, text: string): Promise<void>;
  close(): void;
}

export function createNotifier(opts: { smtpUrl?: string; to: readonly string[]; from: string }): Notifier {
  if (!opts.smtpUrl || opts.to.length === 0) {
    return { enabled: false, notify: async () => undefined, close: () => undefined };
  }
  const transport = nodemailer.createTransport(opts.smtpUrl);
  return {
    enabled: true,
    notify: async (subject, text) => {
      await transport.sendMail({ from: opts.from, to: [...opts.to], subject, text });
    },
    close: () => transport.close(),
  };
}
