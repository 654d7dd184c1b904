// Benchmark target (c): a plain node-smpp server, as a peer implementation would be written.
// Answers every bind with OK, every submit_sm with a submit_sm_resp carrying a message id,
// enquire_link and unbind with their responses. Nothing else.
//   node server.js PORT [HOST]
'use strict';
const smpp = require('smpp');

const port = parseInt(process.argv[2] || '2775', 10);
const host = process.argv[3] || '127.0.0.1';
let counter = 0;

const server = smpp.createServer(function (session) {
  session.socket.setNoDelay(true); // as uvloop/asyncio do for our servers: no Nagle delay on small writes
  const bind = (pdu) => session.send(pdu.response({ system_id: 'nodepeer' }));
  session.on('bind_transceiver', bind);
  session.on('bind_transmitter', bind);
  session.on('bind_receiver', bind);
  session.on('submit_sm', (pdu) => session.send(pdu.response({ message_id: (++counter).toString(16).padStart(19, '0') })));
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => { session.send(pdu.response()); session.close(); });
  session.on('error', () => session.destroy());
});

server.listen(port, host, () => console.log(`READY ${port}`));
const stop = () => { server.close(); for (const s of server.sessions.slice()) s.destroy(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
