// Fallback MongoDB-wire server (de.bwaldvogel:mongo-java-server, H2 file backend) used by
// ops/stack/stack.sh when FerretDB is unavailable. Usage: KchatMongoServer HOST PORT DBFILE
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import java.util.List;

public final class KchatMongoServer {
    // The library's newest built-in version (ServerVersion.MONGO_5_0) still advertises wire
    // version 8, which current drivers reject (pymongo 4.x needs >= 9, i.e. MongoDB 4.4).
    private static final MongoVersion ADVERTISED = new MongoVersion() {
        @Override public List<Integer> getVersionArray() { return List.of(5, 0, 0); }
        @Override public int getWireVersion() { return 13; }
    };

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: KchatMongoServer HOST PORT DBFILE");
            System.exit(2);
        }
        H2Backend backend = new H2Backend(args[2]);
        backend.version(ADVERTISED);
        MongoServer server = new MongoServer(backend);
        server.bind(args[0], Integer.parseInt(args[1]));
        System.out.println("mongo-java-server listening on " + args[0] + ":" + args[1]);
        Runtime.getRuntime().addShutdownHook(new Thread(server::shutdown, "shutdown"));
        Thread.currentThread().join();
    }
}
