/**
 * Create a machine. The inline errors come from the same zod schema the
 * API validates records with (src/contract/vm-record.ts), checked as the
 * user types; what the API still refuses (a field the role may not set, a
 * name taken) shows as its sentence next to that field. Images and
 * networks offered are those that exist; a `user` is not offered a kernel
 * outside the boot directories or a bridge (admin-only fields).
 */
import { useMemo, useState, type FormEvent } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { vmRecordSchema } from '../../../src/contract/vm-record';
import { api, ApiError, type Session, type Vm } from '../api';
import { VMS_KEY } from '../live';

interface Form {
  name: string;
  vcpus: string;
  memory: string;
  boot: 'image' | 'kernel';
  image: string;
  size: string;
  kernel: string;
  initrd: string;
  cmdline: string;
  network: string;
  pool: string;
}

const EMPTY: Form = { name: '', vcpus: '1', memory: '512', boot: 'image', image: '', size: '', kernel: '', initrd: '', cmdline: 'console=tty0 console=ttyS0', network: 'user', pool: '' };

/** The record the form describes (uuid filled in by the API). */
function recordOf(f: Form): Record<string, unknown> {
  const spec: Record<string, unknown> = { vcpus: Number(f.vcpus), memory: Number(f.memory), nics: f.network === '' ? [] : [{ network: f.network }] };
  if (f.boot === 'image') spec.disks = [{ image: f.image, ...(f.size !== '' ? { size: Number(f.size) } : {}) }];
  else spec.boot = { kernel: f.kernel, ...(f.initrd !== '' ? { initrd: f.initrd } : {}), ...(f.cmdline !== '' ? { cmdline: f.cmdline } : {}) };
  return { name: f.name, spec, ...(f.pool !== '' ? { pool: f.pool } : {}) };
}

/** Field (form key) → the schema's sentence, for each problem. */
function problems(f: Form): Record<string, string> {
  const r = vmRecordSchema.safeParse({ uuid: '00000000-0000-4000-8000-000000000000', ...recordOf(f) });
  if (r.success) return {};
  const out: Record<string, string> = {};
  for (const issue of r.error.issues) {
    const path = issue.path.map(String);
    const key = path[0] === 'name' ? 'name' : path[1] === 'vcpus' ? 'vcpus' : path[1] === 'memory' ? 'memory' : path[1] === 'disks' ? (path[3] === 'size' ? 'size' : 'image') : path[1] === 'boot' ? (path[2] === 'initrd' ? 'initrd' : 'kernel') : path[1] === 'nics' ? 'network' : 'form';
    out[key] ??= issue.message.replace(/^Invalid input: /, '');
  }
  return out;
}

export function CreateVmPage({ session }: { session: Session }) {
  const client = useQueryClient();
  const pools = useQuery({ queryKey: ['pools'], queryFn: () => api<{ items: Array<{ name: string }> }>('GET', '/api/v1/pools'), retry: false, enabled: session.role === 'admin' });
  const images = useQuery({ queryKey: ['images'], queryFn: () => api<{ items: Array<{ name: string; version: string; status?: string }> }>('GET', '/api/v1/images'), retry: false });
  const [form, setForm] = useState<Form>(EMPTY);
  const [touched, setTouched] = useState<Set<string>>(new Set());
  const [apiError, setApiError] = useState<{ field: string; message: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const errors = useMemo(() => problems(form), [form]);
  const admin = session.role === 'admin';

  const set = (key: keyof Form) => (value: string) => {
    setForm((f) => ({ ...f, [key]: value }));
    setTouched((t) => new Set(t).add(key));
    setApiError(null);
  };
  const shown = (key: string): string | undefined => (touched.has(key) || touched.has('*') ? errors[key] : undefined) ?? (apiError && apiError.field === key ? apiError.message : undefined);

  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setTouched(new Set(['*']));
    if (Object.keys(errors).length > 0) return;
    setBusy(true);
    try {
      const vm = await api<Vm>('POST', '/api/v1/vms', recordOf(form));
      void client.invalidateQueries({ queryKey: VMS_KEY });
      location.hash = `#/vm/${vm.uuid}`;
    } catch (err) {
      const field = err instanceof ApiError && err.field ? (err.field.startsWith('name') ? 'name' : err.field.includes('kernel') ? 'kernel' : err.field.includes('disks') ? 'image' : err.field.includes('nics') ? 'network' : 'form') : 'form';
      setApiError({ field, message: err instanceof Error ? err.message : String(err) });
    } finally {
      setBusy(false);
    }
  };

  const field = (key: keyof Form, label: string, input: React.ReactNode) => (
    <div className="field">
      <label htmlFor={`f-${key}`}>{label}</label>
      {input}
      {shown(key) && (
        <p className="error" id={`e-${key}`} role="alert">
          {shown(key)}
        </p>
      )}
    </div>
  );
  const text = (key: keyof Form, extra: Record<string, unknown> = {}) => (
    <input id={`f-${key}`} value={form[key]} onChange={(e) => set(key)(e.target.value)} aria-invalid={shown(key) ? true : undefined} aria-describedby={shown(key) ? `e-${key}` : undefined} {...extra} />
  );

  return (
    <section aria-labelledby="create-title">
      <p>
        <a href="#/">← Machines</a>
      </p>
      <h1 id="create-title">Create a machine</h1>
      <form className="card create" onSubmit={(e) => void submit(e)} noValidate>
        {field('name', 'Name', text('name', { placeholder: 'web-1', autoComplete: 'off' }))}
        <div className="row">
          {field('vcpus', 'vCPUs', text('vcpus', { type: 'number', min: 1 }))}
          {field('memory', 'Memory (MiB)', text('memory', { type: 'number', min: 16 }))}
        </div>
        <fieldset className="segmented-field">
          <legend>Boots from</legend>
          <label>
            <input type="radio" name="boot" checked={form.boot === 'image'} onChange={() => set('boot')('image')} /> an image
          </label>
          <label>
            <input type="radio" name="boot" checked={form.boot === 'kernel'} onChange={() => set('boot')('kernel')} /> a kernel
          </label>
        </fieldset>
        {form.boot === 'image' ? (
          <div className="row">
            {field(
              'image',
              'Image',
              <select id="f-image" value={form.image} onChange={(e) => set('image')(e.target.value)}>
                <option value="">{images.data?.items.length ? 'Choose an image' : 'No images yet (drover image import)'}</option>
                {(images.data?.items ?? []).map((i) => (
                  <option key={`${i.name}:${i.version}`} value={`${i.name}:${i.version}`}>
                    {i.name}:{i.version}
                  </option>
                ))}
              </select>,
            )}
            {field('size', 'Disk size (MiB, optional)', text('size', { type: 'number', min: 1 }))}
          </div>
        ) : (
          <>
            {field('kernel', admin ? 'Kernel' : 'Kernel (under a boot directory)', text('kernel', { placeholder: '/srv/boot/vmlinuz' }))}
            {field('initrd', 'Initrd (optional)', text('initrd'))}
            {field('cmdline', 'Kernel command line', text('cmdline'))}
          </>
        )}
        {field(
          'network',
          'Network',
          admin ? (
            text('network', { placeholder: 'user, or a bridge name' })
          ) : (
            <select id="f-network" value={form.network} onChange={(e) => set('network')(e.target.value)}>
              <option value="user">user (NAT)</option>
              <option value="">none</option>
            </select>
          ),
        )}
        {admin &&
          field(
            'pool',
            'Pool (optional)',
            <select id="f-pool" value={form.pool} onChange={(e) => set('pool')(e.target.value)}>
              <option value="">none</option>
              {(pools.data?.items ?? []).map((p) => (
                <option key={p.name}>{p.name}</option>
              ))}
            </select>,
          )}
        {shown('form') && (
          <p className="error" role="alert">
            {shown('form')}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Creating…' : 'Create'}
        </button>
      </form>
    </section>
  );
}
