import fs from 'node:fs';

/**
 * Peak resident memory of a process: the kernel's own high-water mark (VmHWM in /proc/PID/status),
 * which catches peaks between any two samples. Every server whose peak is compared is started
 * fresh for the measured transfer, so its VmHWM covers exactly its start plus that one transfer.
 */
export function peakRssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmHWM for process ${pid}`);
  return Number(kib) * 1024;
}

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export function fmtSize(bytes: number): string {
  return bytes >= GiB ? `${+(bytes / GiB).toFixed(2)} GiB` : `${+(bytes / MiB).toFixed(1)} MiB`;
}
