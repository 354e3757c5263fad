/** `--wait [SECONDS]`, shared by the commands that request a state change. */
import { InvalidArgumentError, Option } from 'commander';

export const DEFAULT_WAIT_SECONDS = 120;

export function waitOption(what: string): Option {
  return new Option('--wait [seconds]', `wait until ${what}, printing each status change to stderr (default timeout ${DEFAULT_WAIT_SECONDS} s)`).argParser(
    (value: string) => {
      const n = Number(value);
      if (!/^\d+(\.\d+)?$/.test(value) || n <= 0) {
        throw new InvalidArgumentError('it must be a number of seconds (put the VM before --wait, or write --wait=SECONDS)');
      }
      return n;
    },
  );
}

/** `--wait` given alone is `true`; absent is undefined. */
export function waitSeconds(flag: number | boolean | undefined): number | null {
  if (flag === undefined || flag === false) return null;
  return flag === true ? DEFAULT_WAIT_SECONDS : flag;
}
