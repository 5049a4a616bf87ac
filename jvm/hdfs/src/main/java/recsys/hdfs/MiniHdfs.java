package recsys.hdfs;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.concurrent.CountDownLatch;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.MiniDFSCluster;

/**
 * A single-process HDFS for tests and local runs: one NameNode and N DataNodes on 127.0.0.1,
 * WebHDFS on, its data under a folder of its own (formatted on the first start only).
 *
 * <pre>java -cp .deps/hdfs/* recsys.hdfs.MiniHdfs BASE_DIR NAMENODE_PORT HTTP_PORT DATANODES READY_FILE</pre>
 *
 * Writes READY_FILE (the hdfs:// URI) once the cluster serves; stops on SIGTERM.
 */
public final class MiniHdfs {
  private MiniHdfs() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 5) {
      System.err.println(
          "usage: MiniHdfs BASE_DIR NAMENODE_PORT HTTP_PORT DATANODES READY_FILE");
      System.exit(2);
    }
    File base = new File(args[0]).getAbsoluteFile();
    int nameNodePort = Integer.parseInt(args[1]);
    int httpPort = Integer.parseInt(args[2]);
    int dataNodes = Integer.parseInt(args[3]);
    Path ready = Path.of(args[4]);
    boolean format = !new File(base, "data/name1/current/VERSION").exists();

    Configuration conf = new Configuration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, base.getPath());
    conf.set("dfs.namenode.http-address", "127.0.0.1:" + httpPort);
    conf.setBoolean("dfs.webhdfs.enabled", true);
    conf.setBoolean("dfs.permissions.enabled", true);
    // One DataNode: every block has one replica; no safe-mode wait for missing ones.
    conf.setInt("dfs.replication", Math.min(3, dataNodes));
    conf.set("hadoop.proxyuser." + System.getProperty("user.name") + ".hosts", "*");
    conf.set("hadoop.proxyuser." + System.getProperty("user.name") + ".groups", "*");

    MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf)
        .nameNodePort(nameNodePort)
        .nameNodeHttpPort(httpPort)
        .numDataNodes(dataNodes)
        .format(format)
        .manageNameDfsDirs(true)
        .manageDataDfsDirs(true)
        .waitSafeMode(true)
        .build();
    cluster.waitActive();
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      cluster.shutdown();
      stopped.countDown();
    }, "mini-hdfs-shutdown"));

    String uri = "hdfs://127.0.0.1:" + cluster.getNameNodePort();
    Path tmp = ready.resolveSibling(ready.getFileName() + ".tmp");
    Files.writeString(tmp, uri + "\n", StandardCharsets.UTF_8);
    Files.move(tmp, ready, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    System.out.println("MiniHdfs ready: " + uri + " (formatted: " + format + ")");
    System.out.flush();
    stopped.await();
  }
}
