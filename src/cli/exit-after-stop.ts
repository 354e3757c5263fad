/**
 * The long-running commands (agent, scheduler, up) end the process once
 * their orderly stop is done: a library timer still retrying an etcd that is
 * already gone (etcd3's lease keepalive after a failed resign, say) must not
 * keep a stopped drover alive. Output is flushed first.
 */
export function exitAfterStop(stdout: NodeJS.WritableStream, code = 0): Promise<never> {
  return new Promise<never>(() => {
    stdout.write('', () => process.exit(code));
  });
}
