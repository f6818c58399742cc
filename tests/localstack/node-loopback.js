// Preloaded into kinesis-mock (node): it binds 0.0.0.0 and has no host option.
// Rewrite every listen() to 127.0.0.1 so nothing is reachable from outside.
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number') {
    const port = args[0];
    const rest = args.slice(1).filter((a) => typeof a !== 'string');
    return listen.call(this, port, '127.0.0.1', ...rest);
  }
  if (args[0] && typeof args[0] === 'object' && !args[0].path) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  }
  return listen.apply(this, args);
};
