export { createHttpApp, type HttpApp, type HttpAppOptions } from './app.js';
export { startHttpServer, formatListen, type HttpServerHandle, type HttpServerOptions } from './server.js';
export type { PullThrough, PullThroughSource } from './pull-through.js';
