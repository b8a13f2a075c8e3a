import { MemoryLocker } from '../../src/cluster/memory-locker.ts';
import { lockerContract } from './locker.contract.ts';

/** The in-process locker (one instance, no Redis): both "instances" are the same locker. */
lockerContract('MemoryLocker', async (opts = {}) => {
  const locker = new MemoryLocker(opts);
  return [locker, locker];
});
