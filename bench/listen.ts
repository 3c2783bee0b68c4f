// A TCP listener for the time-to-offload measurement, run in the server namespace:
//   bun bench/listen.ts PORT
// Accepts every connection on both address families, ignores what arrives, and closes when the
// client does. Prints "listening" once it accepts connections; stops on SIGTERM or after 10 minutes.
const port = Number(Bun.argv[2]);
if (!(port > 0 && port < 65536)) {
  console.error("usage: bun bench/listen.ts PORT");
  process.exit(2);
}
const server = Bun.listen({
  hostname: "::",
  port,
  socket: {
    data() {},
    end(s) {
      s.end();
    },
    error() {},
  },
});
console.log("listening");
const stop = () => {
  server.stop(true);
  process.exit(0);
};
process.on("SIGTERM", stop);
setTimeout(stop, 600_000);
