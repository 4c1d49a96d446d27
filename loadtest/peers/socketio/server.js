// A live-gift server as such servers are commonly written with socket.io: viewers join a
// room, and each gift a connection sends is checked, emitted to the room as one "gift" event
// and acknowledged to its sender. No balances, no storage: the room benchmark measures it
// beside the gifting server as the delivery a user would get from the usual alternative.
//
//   node server.js [port]      (port 0 or none: any free port)
//
// Prints "listening <port>" once it accepts connections; stops on SIGTERM or SIGINT.
//
// A client connects over the WebSocket transport with auth {room, user} in its CONNECT packet
// and is told "joined" once it is in the room. A gift is
//   emit("gift", {gift_id, count, idempotency_key}, ack)
// and is answered with {gift_event_id, idempotency_key} or {error: {code, message}}; the room
// receives "gift" {event_id, gift_id, count, from, idempotency_key, ts} (ts: ms since the epoch).
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
const MAX_COUNT = 10000;

function refuse(ack, body, code, message) {
  const key = body !== null && typeof body === "object" ? body.idempotency_key : undefined;
  ack({ error: { code, message }, idempotency_key: typeof key === "string" ? key : undefined });
}

function main() {
  const port = Number(process.argv[2] || process.env.PORT || 0);
  const httpServer = http.createServer((_request, response) => {
    response.writeHead(404).end();
  });
  const io = new Server(httpServer, {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
  });
  let nextEvent = 0;

  io.on("connection", (socket) => {
    const auth = socket.handshake.auth || {};
    const room = auth.room;
    const user = auth.user === undefined ? socket.id : auth.user;
    if (typeof room !== "string" || !NAME.test(room) || typeof user !== "string" || !NAME.test(user)) {
      socket.emit("refused", { error: { code: "bad_request", message: "auth needs room and user names" } });
      socket.disconnect(true);
      return;
    }
    socket.join(room);
    socket.emit("joined", { room });

    socket.on("gift", (body, ack) => {
      if (typeof ack !== "function") {
        return;
      }
      if (body === null || typeof body !== "object") {
        refuse(ack, body, "bad_request", "a gift is an object");
        return;
      }
      const { gift_id: giftId, count, idempotency_key: key } = body;
      if (typeof giftId !== "string" || !NAME.test(giftId)) {
        refuse(ack, body, "bad_request", "gift_id must be a name");
        return;
      }
      if (!Number.isInteger(count) || count < 1 || count > MAX_COUNT) {
        refuse(ack, body, "bad_request", `count must be an integer from 1 to ${MAX_COUNT}`);
        return;
      }
      if (typeof key !== "string" || key.length < 1 || key.length > 128) {
        refuse(ack, body, "bad_request", "idempotency_key must be a string of 1 to 128 characters");
        return;
      }
      nextEvent += 1;
      const eventId = `g${nextEvent}`;
      io.to(room).emit("gift", {
        event_id: eventId,
        gift_id: giftId,
        count,
        from: user,
        idempotency_key: key,
        ts: Date.now(),
      });
      ack({ gift_event_id: eventId, idempotency_key: key });
    });
  });

  const stop = () => {
    io.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  httpServer.listen(port, "127.0.0.1", () => {
    process.stdout.write(`listening ${httpServer.address().port}\n`);
  });
}

main();
