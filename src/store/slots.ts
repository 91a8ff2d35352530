/**
 * `work` on every element of `list`, at most `atOnce` at a time; the results in the list's order.
 * After a failure nothing new is started, and every piece already started is waited for before the
 * first failure is thrown: nothing is still writing when the caller cleans up.
 */
export async function inSlots<T, R>(list: readonly T[], atOnce: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<PromiseSettledResult<R>>(list.length);
  let next = 0;
  let failed = false;
  const lane = async () => {
    while (next < list.length && !failed) {
      const i = next++;
      results[i] = await work(list[i]!).then(
        (value) => ({ status: 'fulfilled', value }) as const,
        (reason: unknown) => {
          failed = true;
          return { status: 'rejected', reason } as const;
        },
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, atOnce), list.length) }, lane));
  const failure = results.find((r): r is PromiseRejectedResult => r?.status === 'rejected');
  if (failure) throw failure.reason;
  return results.map((r) => (r as PromiseFulfilledResult<R>).value);
}
