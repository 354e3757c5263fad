/**
 * QemuHypervisor against real qemu (TCG) and the test guest: the shared
 * contract, then what only qemu has (argv escaping end to end, VNC over TCP,
 * disks, tap devices, a missing binary, start latency).
 */
import { runHypervisorContract } from './hypervisor.contract.js';
import { makeQemuHarness } from '../helpers/qemu-harness.js';

runHypervisorContract('qemu', makeQemuHarness);
