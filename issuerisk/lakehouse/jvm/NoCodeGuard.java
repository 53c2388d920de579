package issuerisk.spark;

import java.util.ArrayDeque;
import java.util.Deque;
import java.util.HashSet;
import java.util.Set;

import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.trees.TreeNode;

import scala.Function1;
import scala.collection.Iterator;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

/**
 * A check rule for every session of the issuerisk serve JVM (spark.sql.extensions): a plan that would run code
 * chosen by the client is refused before it runs.
 *
 * Refused: SELECT TRANSFORM (a shell command), java_method and reflect (any static Java method), Python UDFs of
 * every kind (scalar, aggregate, table, mapInPandas, mapInArrow, applyInPandas, cogroup), and any function object
 * whose class the client shipped (Scala UDFs and typed Dataset closures sent over Spark Connect): a function is
 * trusted only when its class loader is the session's shared jar loader (Spark's, Delta's and the configured jars'),
 * one of its parents, or this class's own; a Connect session's artifact loader is a child of it, so never trusted.
 */
public final class NoCodeGuard extends AbstractFunction1<SparkSessionExtensions, BoxedUnit> {

  @Override
  public BoxedUnit apply(SparkSessionExtensions extensions) {
    extensions.injectCheckRule(new AbstractFunction1<SparkSession, Function1<LogicalPlan, BoxedUnit>>() {
      @Override
      public Function1<LogicalPlan, BoxedUnit> apply(SparkSession session) {
        return new Check(session);
      }
    });
    return BoxedUnit.UNIT;
  }

  static final class Check extends AbstractFunction1<LogicalPlan, BoxedUnit> {
    private final Set<ClassLoader> trusted = new HashSet<>();

    Check(SparkSession session) {
      for (ClassLoader start : new ClassLoader[] {session.sharedState().jarClassLoader(), NoCodeGuard.class.getClassLoader()}) {
        for (ClassLoader loader = start; loader != null; loader = loader.getParent()) {
          trusted.add(loader);
        }
      }
    }

    @Override
    public BoxedUnit apply(LogicalPlan plan) {
      Deque<Object> todo = new ArrayDeque<>();
      todo.push(plan);
      while (!todo.isEmpty()) {
        Object node = todo.pop();
        if (node instanceof TreeNode<?>) {
          TreeNode<?> tree = (TreeNode<?>) node;
          refuseCode(tree);
          Iterator<?> children = tree.children().iterator();
          while (children.hasNext()) {
            todo.push(children.next());
          }
          if (tree instanceof LogicalPlan) {
            Iterator<?> expressions = ((LogicalPlan) tree).expressions().iterator();
            while (expressions.hasNext()) {
              todo.push(expressions.next());
            }
            Iterator<?> inner = ((LogicalPlan) tree).subqueries().iterator();
            while (inner.hasNext()) {
              todo.push(inner.next());
            }
          }
          Iterator<Object> fields = tree.productIterator();
          while (fields.hasNext()) {
            refuseForeignFunction(tree, fields.next());
          }
        }
      }
      return BoxedUnit.UNIT;
    }

    private static void refuseCode(TreeNode<?> node) {
      String name = node.getClass().getSimpleName();
      String why = null;
      if (name.equals("ScriptTransformation")) {
        why = "TRANSFORM runs a command on the server";
      } else if (name.equals("CallMethodViaReflection")) {
        why = "java_method and reflect call Java methods on the server";
      } else if (name.startsWith("Python") || name.contains("InPandas") || name.contains("InArrow")) {
        why = "Python functions run the client's code on the server";
      }
      if (why != null) {
        throw new SecurityException("issuerisk serve refuses " + name + ": " + why
            + "; read the tables with SQL or the DataFrame API and run your own code in your own process");
      }
    }

    private void refuseForeignFunction(TreeNode<?> node, Object field) {
      if (!(field instanceof scala.Function0<?> || field instanceof Function1<?, ?> || field instanceof scala.Function2<?, ?, ?>
          || field instanceof scala.Function3<?, ?, ?, ?> || field instanceof java.util.function.Function<?, ?>)) {
        return;
      }
      ClassLoader loader = field.getClass().getClassLoader();
      if (loader == null || trusted.contains(loader)) {
        return;
      }
      throw new SecurityException("issuerisk serve refuses " + node.getClass().getSimpleName() + " with the client's function "
          + field.getClass().getName() + ": code shipped by a client does not run on the server; run it in your own process");
    }
  }
}
