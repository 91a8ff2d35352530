import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default', './test/summary-reporter.ts'],
    projects: [
      {
        extends: true,
        test: { name: 'unit-and-e2e', include: ['src/**/*.test.ts', 'test/**/*.test.ts', 'bench/**/*.test.ts'], exclude: ['test/boot/**'], sequence: { groupOrder: 0 } },
      },
      {
        // Emulated firmware on a 2-core machine is timing-sensitive (iPXE and pxelinux retry on their own
        // clocks): the boot suite runs after everything else, alone, in the same run and summary.
        extends: true,
        test: { name: 'firmware', include: ['test/boot/**/*.test.ts'], sequence: { groupOrder: 1 } },
      },
    ],
  },
});
