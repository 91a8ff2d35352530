import { UpstreamServer } from '../../src/demo-upstream/server.js';

/** The generated upstream, served from inside the boot lab's namespace: prints its URL, stops on SIGTERM. */
const server = new UpstreamServer({ root: process.argv[2]! });
process.stdout.write(`${await server.start()}\n`);
process.once('SIGTERM', () => void server.stop().then(() => process.exit(0)));
