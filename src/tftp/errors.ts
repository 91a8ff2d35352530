// The classes live in the registry (src/errors.ts); these names stay importable from here.
export { TftpAccessError, TftpBindError, TftpRemoteError, formatAddress } from '../errors.js';
