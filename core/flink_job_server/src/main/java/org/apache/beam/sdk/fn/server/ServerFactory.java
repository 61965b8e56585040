/*
 * This project's replacement for Beam's org.apache.beam.sdk.fn.server.ServerFactory (Beam 2.62), with the same
 * public API, written for this project and shaded over Beam's class in the job server jar (pom.xml).
 *
 * Why: Beam's own factory binds every gRPC server to all network interfaces (NettyServerBuilder.forPort),
 * whatever host it advertises. That covers the job and artifact services and the control, data, state, logging
 * and provisioning servers that each Flink TaskManager opens for its SDK workers. This one binds each server to
 * the address it advertises: the job server's --job-host (127.0.0.1 by default), and the loopback address for
 * the servers that only SDK workers on the same host reach.
 */
package org.apache.beam.sdk.fn.server;

import java.io.File;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.nio.file.Files;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.apache.beam.model.pipeline.v1.Endpoints;
import org.apache.beam.sdk.fn.channel.SocketAddressFactory;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.BindableService;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.Server;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.ServerInterceptors;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.netty.NettyServerBuilder;
import org.apache.beam.vendor.grpc.v1p60p1.io.netty.channel.ServerChannel;
import org.apache.beam.vendor.grpc.v1p60p1.io.netty.channel.epoll.EpollEventLoopGroup;
import org.apache.beam.vendor.grpc.v1p60p1.io.netty.channel.epoll.EpollServerDomainSocketChannel;
import org.apache.beam.vendor.grpc.v1p60p1.io.netty.channel.epoll.EpollServerSocketChannel;
import org.apache.beam.vendor.grpc.v1p60p1.io.netty.channel.unix.DomainSocketAddress;
import org.apache.beam.vendor.guava.v32_1_2_jre.com.google.common.net.HostAndPort;

/** Creates gRPC servers for Beam's portability services, each bound to the one address it advertises. */
public abstract class ServerFactory {
  // Clients ping idle connections; pings more often than this are refused by gRPC.
  private static final long KEEP_ALIVE_SECONDS = 20;

  /** Servers on a free port of the loopback address, named by host:port. */
  public static ServerFactory createDefault() {
    return new InetSocketAddressServerFactory(UrlFactory.createDefault(), () -> 0);
  }

  public static ServerFactory createWithUrlFactory(UrlFactory urlFactory) {
    return new InetSocketAddressServerFactory(urlFactory, () -> 0);
  }

  public static ServerFactory createWithPortSupplier(Supplier<Integer> portSupplier) {
    return new InetSocketAddressServerFactory(UrlFactory.createDefault(), portSupplier);
  }

  public static ServerFactory createWithUrlFactoryAndPortSupplier(
      UrlFactory urlFactory, Supplier<Integer> portSupplier) {
    return new InetSocketAddressServerFactory(urlFactory, portSupplier);
  }

  /** As createDefault, with Netty's native epoll transport. */
  public static ServerFactory createEpollSocket() {
    return new EpollSocketServerFactory();
  }

  /** Servers on Unix domain sockets in the temporary folder. */
  public static ServerFactory createEpollDomainSocket() {
    return new EpollDomainSocketServerFactory();
  }

  /** Starts a server for `services` on an address this factory picks, and writes that address into `builder`. */
  public abstract Server allocateAddressAndCreate(
      List<BindableService> services, Endpoints.ApiServiceDescriptor.Builder builder) throws IOException;

  /** Starts a server for `services` at the address `descriptor` names. */
  public abstract Server create(List<BindableService> services, Endpoints.ApiServiceDescriptor descriptor)
      throws IOException;

  /** Turns a host and port into the URL clients are given. */
  public interface UrlFactory {
    String createUrl(String host, int port);

    static UrlFactory createDefault() {
      return (host, port) -> HostAndPort.fromParts(host, port).toString();
    }
  }

  private static Server start(NettyServerBuilder builder, List<BindableService> services) throws IOException {
    builder.maxInboundMessageSize(Integer.MAX_VALUE).permitKeepAliveTime(KEEP_ALIVE_SECONDS, TimeUnit.SECONDS);
    for (BindableService service : services) {
      // The interceptor makes the worker id header of each call readable to the services.
      builder.addService(ServerInterceptors.intercept(service, GrpcContextHeaderAccessorProvider.interceptor()));
    }
    return builder.build().start();
  }

  /** A builder on Netty's native epoll transport, whose server sockets are of type `channel`. */
  private static NettyServerBuilder epoll(SocketAddress address, Class<? extends ServerChannel> channel) {
    return NettyServerBuilder.forAddress(address)
        .channelType(channel)
        .workerEventLoopGroup(new EpollEventLoopGroup())
        .bossEventLoopGroup(new EpollEventLoopGroup());
  }

  private static InetSocketAddress inetAddressOf(Endpoints.ApiServiceDescriptor descriptor) {
    SocketAddress address = SocketAddressFactory.createFrom(descriptor.getUrl());
    if (!(address instanceof InetSocketAddress)) {
      throw new IllegalArgumentException(
          "this server factory serves host:port addresses, not " + descriptor.getUrl());
    }
    return (InetSocketAddress) address;
  }

  static class InetSocketAddressServerFactory extends ServerFactory {
    private final UrlFactory urlFactory;
    private final Supplier<Integer> portSupplier;

    InetSocketAddressServerFactory(UrlFactory urlFactory, Supplier<Integer> portSupplier) {
      this.urlFactory = urlFactory;
      this.portSupplier = portSupplier;
    }

    /** The builder of a server at `address`: Netty's default transport here, epoll in the subclass. */
    NettyServerBuilder builderFor(InetSocketAddress address) {
      return NettyServerBuilder.forAddress(address);
    }

    @Override
    public Server allocateAddressAndCreate(
        List<BindableService> services, Endpoints.ApiServiceDescriptor.Builder builder) throws IOException {
      InetAddress loopback = InetAddress.getLoopbackAddress();
      Server server = start(builderFor(new InetSocketAddress(loopback, portSupplier.get())), services);
      builder.setUrl(urlFactory.createUrl(loopback.getHostAddress(), server.getPort()));
      return server;
    }

    @Override
    public Server create(List<BindableService> services, Endpoints.ApiServiceDescriptor descriptor)
        throws IOException {
      return start(builderFor(inetAddressOf(descriptor)), services);
    }
  }

  static class EpollSocketServerFactory extends InetSocketAddressServerFactory {
    EpollSocketServerFactory() {
      super(UrlFactory.createDefault(), () -> 0);
    }

    @Override
    NettyServerBuilder builderFor(InetSocketAddress address) {
      return epoll(address, EpollServerSocketChannel.class);
    }
  }

  static class EpollDomainSocketServerFactory extends ServerFactory {
    private static final String UNIX_PREFIX = "unix://";

    @Override
    public Server allocateAddressAndCreate(
        List<BindableService> services, Endpoints.ApiServiceDescriptor.Builder builder) throws IOException {
      File socket = Files.createTempFile("beam-fn-", ".sock").toFile();
      // The server creates the socket file itself; the temporary file only reserved a unique name.
      Files.delete(socket.toPath());
      socket.deleteOnExit();
      Server server = start(epoll(new DomainSocketAddress(socket), EpollServerDomainSocketChannel.class), services);
      builder.setUrl(UNIX_PREFIX + socket.getAbsolutePath());
      return server;
    }

    @Override
    public Server create(List<BindableService> services, Endpoints.ApiServiceDescriptor descriptor)
        throws IOException {
      SocketAddress address = SocketAddressFactory.createFrom(descriptor.getUrl());
      if (!(address instanceof DomainSocketAddress)) {
        throw new IllegalArgumentException(
            "this server factory serves unix:// socket addresses, not " + descriptor.getUrl());
      }
      return start(epoll(address, EpollServerDomainSocketChannel.class), services);
    }
  }
}
