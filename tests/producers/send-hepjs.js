// Sends HEP built by hep-js (the library the Bun prototype used) over UDP.
// usage: node send-hepjs.js <host> <port> <count> <call-id-prefix> [<call-id>]
// With a fifth argument it also sends one RTCP sender report (HEP type 5, JSON
// as heplify sends it) and one log line (HEP type 100) correlated with that Call-ID.
const hepjs = require('hep-js');
const dgram = require('dgram');

const [host, port, count, prefix, callOf] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), process.argv[5], process.argv[6]];
const sock = dgram.createSocket('udp4');
const now = Date.now();
let pending = count + (callOf ? 2 : 0);

// One HEP packet from 192.168.1.1 to 192.168.1.2 at `t` (ms).
function send(payload, payloadType, t, [srcPort, dstPort], correlationId) {
  const msg = hepjs.encapsulate(payload, {
    type: 'HEP', version: 3, payloadType,
    payload_type: { 1: 'SIP', 5: 'RTCP', 100: 'LOG' }[payloadType],
    captureId: 2001, capturePass: 'myHep', hepNodeName: 'hepjs-node',
    protocolFamily: 2, protocol: 17,
    srcIp: '192.168.1.1', dstIp: '192.168.1.2', srcPort, dstPort,
    timeSeconds: Math.floor(t / 1000), timeUseconds: (t % 1000) * 1000,
    correlation_id: correlationId,
  });
  sock.send(msg, 0, msg.length, port, host, (err) => {
    if (err) { console.error(err); process.exit(1); }
    if (--pending === 0) sock.close();
  });
}

if (callOf) {
  const t = now - 500;
  const report = JSON.stringify({
    sender_information: { ntp_timestamp_sec: Math.floor(t / 1000), ntp_timestamp_usec: (t % 1000) * 1000, rtp_timestamp: 8000, packets: 50, octets: 8600 },
    ssrc: 4242, type: 200, report_count: 1,
    report_blocks: [{ source_ssrc: 2424, fraction_lost: 0, packets_lost: 3, highest_seq_no: 50, ia_jitter: 7, lsr: 0, dlsr: 0 }],
    report_blocks_xr: {}, sdes_ssrc: 4242,
  });
  send(report, 5, t, [16001, 20001], callOf);
  send(`NOTICE: call ${callOf} routed by hep-js`, 100, t, [5060, 5060], callOf);
}
for (let i = 0; i < count; i++) {
  const callId = `${prefix}-${i}@127.0.0.1`;
  const payload = `OPTIONS sip:127.0.0.1 SIP/2.0\r\nCall-ID: ${callId}\r\nCSeq: ${9000 + i} OPTIONS\r\n` +
    `From: <sip:nodejs@127.0.0.1>;tag=2628881569\r\nTo: <sip:nodejs@127.0.0.1>\r\n` +
    `Via: SIP/2.0/UDP 127.0.0.1:48495;branch=z9hG4bK9b82aa8fb4c7705466a3456dfff7f38433333${i}\r\n` +
    `Max-Forwards: 70\r\nUser-Agent: HEPGEN-UAC\r\nContent-Length: 0\r\n\r\n`;
  send(payload, 1, now - 1000 + i, [5060, 5060], callId);
}
