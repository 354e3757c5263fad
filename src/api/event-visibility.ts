/**
 * What of the event stream a caller may see. Every role but `user` sees
 * everything; a `user` sees the events and record changes of its own VMs
 * only. Ownership is followed through the stream itself (VM puts arrive in
 * revision order with the events), starting from a list read when the
 * stream opens, so a VM handed to someone else stops showing at once.
 */
import type { Principal } from '../auth/authenticate.js';
import { seesAllVms } from '../auth/privileges.js';
import type { StoredEvent } from '../store/event-log.js';

export class EventVisibility {
  private readonly owners = new Map<string, string | undefined>();
  private readonly all: boolean;

  /** `vms`: the VMs the principal may see now, with their owners (from the API's index). */
  constructor(
    private readonly principal: Principal,
    vms: readonly { vm: { uuid: string }; owner: string | undefined }[],
  ) {
    this.all = seesAllVms(principal.role);
    if (!this.all) for (const v of vms) this.owners.set(v.vm.uuid, v.owner);
  }

  /** A VM record was written: whether the caller sees that write (not once it belongs to someone else). */
  vmPut(uuid: string, owner: string | undefined): boolean {
    this.owners.set(uuid, owner);
    return this.all || owner === this.principal.user;
  }

  vmDeleted(uuid: string): boolean {
    const owner = this.owners.get(uuid);
    this.owners.delete(uuid);
    return this.all || owner === this.principal.user;
  }

  event(ev: StoredEvent): boolean {
    if (this.all) return true;
    if (ev.owner !== undefined) return ev.owner === this.principal.user;
    return ev.vm !== undefined && this.owners.get(ev.vm) === this.principal.user;
  }
}
