/** How long `vm snapshot` (and a backup's snapshot) waits for the agent's outcome by default, in seconds. */
export const DEFAULT_SNAPSHOT_WAIT_SECONDS = 300;
